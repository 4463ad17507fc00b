package middleware

import (
	"net"
	"net/netip"
	"strings"
)

// clientAddress returns the address login throttling charges a request
// to (docs/PROTOCOL.md §9):
//
//   - the peer of the connection (r.RemoteAddr), unless it is in
//     Options.TrustedProxies;
//   - if it is, the forwarding chain — the Forwarded header's for=
//     parameters (RFC 7239) if there is one, else X-Forwarded-For — read
//     from the right (the hop the trusted proxy added) leftwards, skipping
//     trusted proxies: the first address that is not one is the client.
//     Anything left of it was written by the client and is ignored. An
//     unparsable hop (e.g. "unknown", an obfuscated identifier) stops the
//     walk at the last trusted address. If every hop is trusted, the
//     leftmost is the client.
//
// A spoofed X-Forwarded-For from an untrusted peer is therefore never
// read. IPv4-mapped IPv6 addresses count as IPv4, and IPv6 addresses are
// reduced to their /64 prefix (one subscriber's, who can use all of it).
func (m *Middleware) clientAddress(r *Request) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr // not a TCP peer (tests, unix sockets): as given
	}
	if !m.trusted(peer) {
		return normalizeAddr(peer)
	}
	client := peer
	hops := forwardedFor(r.header)
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = a
		if !m.trusted(a) {
			break
		}
	}
	return normalizeAddr(client)
}

func (m *Middleware) trusted(a netip.Addr) bool {
	for _, p := range m.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the client chain of the Forwarded header (its for=
// values, every header line in order, as header returns them joined with
// ", "), or if there is none that of X-Forwarded-For.
func forwardedFor(header func(string) string) []string {
	var hops []string
	for _, line := range nonEmpty(header("Forwarded")) {
		for _, elem := range strings.Split(line, ",") {
			found := false
			for _, pair := range strings.Split(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "for") {
					hops = append(hops, strings.Trim(v, `"`))
					found = true
				}
			}
			if !found {
				hops = append(hops, "") // an element without for=: unparsable
			}
		}
	}
	if len(hops) > 0 {
		return hops
	}
	for _, line := range nonEmpty(header("X-Forwarded-For")) {
		for _, hop := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// nonEmpty returns v as a one-line list, none if v is empty.
func nonEmpty(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// parseHop parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port".
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

func normalizeAddr(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
