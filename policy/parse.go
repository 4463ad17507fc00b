package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrSyntax is wrapped by every error of Parse; the message names the bad
// token and its byte offset.
var ErrSyntax = errors.New("dynkey/policy: syntax error")

// Parse reads a policy in the short syntax (see the package comment):
//
//	expr   = and { "or" and }
//	and    = factor { "and" factor }
//	factor = "(" expr ")" | "reject(" expr ")" | "jitter(" PERCENT "," expr ")"
//	       | "manual" | "daily@" HH ":" MM | NAME ">=" VALUE
//	NAME   = uptime | offset_growth | age (durations) | messages (count) | bytes (size)
//
// Parse(p.String()) returns a policy with the same String for every policy
// of this package.
func Parse(s string) (Policy, error) {
	ps := &parser{toks: tokenize(s), src: s}
	if len(ps.toks) == 0 {
		return nil, fmt.Errorf("%w: empty policy", ErrSyntax)
	}
	p, err := ps.expr()
	if err != nil {
		return nil, err
	}
	if ps.i < len(ps.toks) {
		return nil, ps.errf("unexpected %q", ps.toks[ps.i].s)
	}
	return p, nil
}

// MustParse is Parse for constants; it panics on error.
func MustParse(s string) Policy {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

type token struct {
	s   string
	off int
}

// tokenize splits on spaces and around "(", ")", ",".
func tokenize(s string) []token {
	var toks []token
	start := -1
	flush := func(i int) {
		if start >= 0 {
			toks = append(toks, token{s[start:i], start})
			start = -1
		}
	}
	for i, r := range s {
		switch {
		case unicode.IsSpace(r):
			flush(i)
		case r == '(' || r == ')' || r == ',':
			flush(i)
			toks = append(toks, token{string(r), i})
		default:
			if start < 0 {
				start = i
			}
		}
	}
	flush(len(s))
	return toks
}

type parser struct {
	toks []token
	i    int
	src  string
}

func (p *parser) errf(format string, a ...any) error {
	off := len(p.src)
	if p.i < len(p.toks) {
		off = p.toks[p.i].off
	}
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, off, fmt.Sprintf(format, a...))
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i].s
	}
	return ""
}

func (p *parser) expect(s string) error {
	if p.peek() != s {
		if p.i >= len(p.toks) {
			return p.errf("expected %q at the end", s)
		}
		return p.errf("expected %q, found %q", s, p.peek())
	}
	p.i++
	return nil
}

func (p *parser) expr() (Policy, error) {
	var terms []Policy
	for {
		t, err := p.and()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
		if p.peek() != "or" {
			break
		}
		p.i++
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return AnyOf(terms...), nil
}

func (p *parser) and() (Policy, error) {
	var fs []Policy
	for {
		f, err := p.factor()
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
		if p.peek() != "and" {
			break
		}
		p.i++
	}
	if len(fs) == 1 {
		return fs[0], nil
	}
	return AllOf(fs...), nil
}

func (p *parser) factor() (Policy, error) {
	tok := p.peek()
	switch {
	case tok == "":
		return nil, p.errf("expected a rule at the end")
	case tok == "(":
		p.i++
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	case tok == "reject":
		p.i++
		if err := p.expect("("); err != nil {
			return nil, err
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return RejectAfter(e), p.expect(")")
	case tok == "jitter":
		p.i++
		if err := p.expect("("); err != nil {
			return nil, err
		}
		pct := p.peek()
		v, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
		if !strings.HasSuffix(pct, "%") || err != nil || !(v > 0 && v <= 100) {
			return nil, p.errf("jitter needs a percentage in (0%%, 100%%], found %q", pct)
		}
		p.i++
		if err := p.expect(","); err != nil {
			return nil, err
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return Jitter(v/100, e), p.expect(")")
	case tok == "manual":
		p.i++
		return Manual(), nil
	case strings.HasPrefix(tok, "daily@"):
		hm := strings.TrimPrefix(tok, "daily@")
		var h, m int
		if len(hm) != 5 || hm[2] != ':' {
			return nil, p.errf("bad daily time %q (want daily@HH:MM)", tok)
		}
		h, err1 := strconv.Atoi(hm[:2])
		m, err2 := strconv.Atoi(hm[3:])
		if err1 != nil || err2 != nil || h > 23 || m > 59 || h < 0 || m < 0 {
			return nil, p.errf("bad daily time %q (want daily@HH:MM)", tok)
		}
		p.i++
		return Daily(h, m), nil
	}
	name, val, ok := strings.Cut(tok, ">=")
	if !ok {
		return nil, p.errf("unknown rule %q", tok)
	}
	var pol Policy
	switch name {
	case "uptime", "offset_growth", "age":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return nil, p.errf("bad duration %q in %q", val, tok)
		}
		pol = map[string]func(time.Duration) Policy{"uptime": Uptime, "offset_growth": OffsetGrowth, "age": MaxAge}[name](d)
	case "messages":
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil || n == 0 {
			return nil, p.errf("bad count %q in %q", val, tok)
		}
		pol = MaxMessages(n)
	case "bytes":
		n, err := parseSize(val)
		if err != nil || n == 0 {
			return nil, p.errf("bad size %q in %q", val, tok)
		}
		pol = MaxBytes(n)
	default:
		return nil, p.errf("unknown rule %q", name)
	}
	p.i++
	return pol, nil
}

var sizeUnits = []struct {
	name string
	n    uint64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

func parseSize(s string) (uint64, error) {
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.name); ok {
			n, err := strconv.ParseUint(num, 10, 64)
			if err != nil || n > ^uint64(0)/u.n {
				return 0, errors.New("bad size")
			}
			return n * u.n, nil
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func fmtSize(n uint64) string {
	for _, u := range sizeUnits {
		if u.n > 1 && n%u.n == 0 {
			return strconv.FormatUint(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(n, 10)
}

// fmtDuration is time.Duration.String without trailing zero units
// ("24h", "1h30m", "90ms").
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
