package tink

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/wire"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// keysetIDs returns the tink key ids in a manager's keyset, and the
// primary's.
func keysetIDs(t *testing.T, m *keyset.Manager) (ids []uint32, primary uint32) {
	t.Helper()
	h, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.KeyID())
		if e.IsPrimary() {
			primary = e.KeyID()
		}
	}
	return ids, primary
}

func TestRingLifecycle(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			client := mustKey(t, s)
			k1, k2 := mustKey(t, s), mustKey(t, s)
			info, aad := []byte("dynkey/v1 request"), []byte("aad")
			sealTo := func(k *privateKey, msg string) []byte {
				t.Helper()
				ct, _, err := s.Seal(nil, k.Public(), client, info, aad, []byte(msg))
				if err != nil {
					t.Fatal(err)
				}
				return ct
			}
			ct1, ct2 := sealTo(k1, "to k1"), sealTo(k2, "to k2")

			r, err := NewRing(s)
			if err != nil {
				t.Fatal(err)
			}
			// Add.
			id1, err := r.Add(k1)
			if err != nil {
				t.Fatal(err)
			}
			if id1 != wire.ComputeKeyID(s.name, k1.Public().Bytes()) {
				t.Errorf("Add returned %s, not the wire key id", id1)
			}
			id2, err := r.Add(k2)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.IDs(); !slices.Equal(got, []wire.KeyID{id1, id2}) {
				t.Errorf("IDs() = %v", got)
			}
			if _, err := r.Add(k1); !errors.Is(err, ErrDuplicateKey) {
				t.Errorf("Add twice: %v, want ErrDuplicateKey", err)
			}
			// Nothing works before a primary is set.
			if _, ok := r.Primary(); ok {
				t.Errorf("primary before SetPrimary")
			}
			if _, _, err := r.Seal(nil, client.Public(), info, aad, nil); !errors.Is(err, ErrNoPrimary) {
				t.Errorf("Seal without primary: %v, want ErrNoPrimary", err)
			}
			if _, _, err := r.Open(id1, client.Public(), info, aad, ct1); err != crypto.ErrOpen {
				t.Errorf("Open without primary: %v, want ErrOpen", err)
			}

			// Set primary: both keys decrypt, Seal signs with k1.
			if err := r.SetPrimary(id1); err != nil {
				t.Fatal(err)
			}
			ids := map[string]wire.KeyID{"to k1": id1, "to k2": id2}
			opens := func(ct []byte, want string) bool {
				t.Helper()
				pt, _, err := r.Open(ids[want], client.Public(), info, aad, ct)
				if err == nil && string(pt) != want {
					t.Fatalf("Open = %q, want %q", pt, want)
				}
				if err != nil && err != crypto.ErrOpen {
					t.Fatalf("Open error %v, want crypto.ErrOpen", err)
				}
				return err == nil
			}
			if !opens(ct1, "to k1") || !opens(ct2, "to k2") {
				t.Fatalf("enabled keys do not decrypt")
			}
			// Each ciphertext opens only with the key its header names,
			// never by trying the ring's other keys.
			for _, c := range []struct {
				name string
				id   wire.KeyID
				ct   []byte
			}{
				{"k1's ciphertext named as k2", id2, ct1},
				{"k2's ciphertext named as k1", id1, ct2},
				{"unknown key id", wire.KeyID{1, 2, 3}, ct1},
			} {
				if _, _, err := r.Open(c.id, client.Public(), info, aad, c.ct); err != crypto.ErrOpen {
					t.Errorf("%s: Open = %v, want crypto.ErrOpen", c.name, err)
				}
			}
			signedBy := func() crypto.PrivateKey {
				t.Helper()
				ct, secret, err := r.Seal(nil, client.Public(), info, aad, []byte("reply"))
				if err != nil {
					t.Fatal(err)
				}
				var who crypto.PrivateKey
				for _, k := range []*privateKey{k1, k2} {
					if pt, s2, err := s.Open(client, k.Public(), info, aad, ct); err == nil {
						if string(pt) != "reply" || !bytes.Equal(secret, s2) {
							t.Fatalf("ring Seal: wrong plaintext or secret")
						}
						who = k
					}
				}
				return who
			}
			if signedBy() != k1 {
				t.Errorf("Seal does not authenticate as the primary k1")
			}
			if p, ok := r.Primary(); !ok || p != id1 {
				t.Errorf("Primary() = %s, %v; want %s", p, ok, id1)
			}

			// The primary changes on SetPrimary, in both keysets.
			if err := r.SetPrimary(id2); err != nil {
				t.Fatal(err)
			}
			if p, _ := r.Primary(); p != id2 {
				t.Errorf("Primary() = %s after SetPrimary(%s)", p, id2)
			}
			if signedBy() != k2 {
				t.Errorf("Seal does not authenticate as the new primary k2")
			}
			e2 := r.entries[id2]
			if _, p := keysetIDs(t, r.hybrid); p != e2.hybridID {
				t.Errorf("hybrid keyset primary is %d, want %d", p, e2.hybridID)
			}
			if _, p := keysetIDs(t, r.sig); p != e2.sigID {
				t.Errorf("signature keyset primary is %d, want %d", p, e2.sigID)
			}

			// The primary can be neither disabled nor deleted.
			if err := r.Disable(id2); !errors.Is(err, ErrPrimaryKey) {
				t.Errorf("Disable(primary): %v, want ErrPrimaryKey", err)
			}
			if err := r.Delete(id2); !errors.Is(err, ErrPrimaryKey) {
				t.Errorf("Delete(primary): %v, want ErrPrimaryKey", err)
			}

			// After Disable the key no longer decrypts; the others do.
			if err := r.Disable(id1); err != nil {
				t.Fatal(err)
			}
			if st, err := r.Status(id1); err != nil || st != keyset.Disabled {
				t.Errorf("Status(k1) = %v, %v; want Disabled", st, err)
			}
			if opens(ct1, "to k1") {
				t.Errorf("disabled key still decrypts")
			}
			if !opens(ct2, "to k2") {
				t.Errorf("primary key no longer decrypts")
			}
			if err := r.SetPrimary(id1); !errors.Is(err, ErrKeyDisabled) {
				t.Errorf("SetPrimary(disabled): %v, want ErrKeyDisabled", err)
			}
			// Enable undoes it.
			if err := r.Enable(id1); err != nil {
				t.Fatal(err)
			}
			if !opens(ct1, "to k1") {
				t.Errorf("re-enabled key does not decrypt")
			}
			if err := r.Disable(id1); err != nil {
				t.Fatal(err)
			}

			// After Delete the key is gone from both keysets.
			e1 := r.entries[id1]
			if err := r.Delete(id1); err != nil {
				t.Fatal(err)
			}
			hids, _ := keysetIDs(t, r.hybrid)
			sids, _ := keysetIDs(t, r.sig)
			if slices.Contains(hids, e1.hybridID) || slices.Contains(sids, e1.sigID) || len(hids) != 1 || len(sids) != 1 {
				t.Errorf("after Delete the keysets hold %v and %v; key %d/%d should be gone", hids, sids, e1.hybridID, e1.sigID)
			}
			if _, err := r.Status(id1); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("Status(deleted): %v, want ErrUnknownKey", err)
			}
			if got := r.IDs(); !slices.Equal(got, []wire.KeyID{id2}) {
				t.Errorf("IDs() after Delete = %v", got)
			}
			if opens(ct1, "to k1") {
				t.Errorf("deleted key still decrypts")
			}
			for name, fn := range map[string]func(wire.KeyID) error{
				"SetPrimary": r.SetPrimary, "Enable": r.Enable, "Disable": r.Disable, "Delete": r.Delete,
			} {
				if err := fn(id1); !errors.Is(err, ErrUnknownKey) {
					t.Errorf("%s(deleted): %v, want ErrUnknownKey", name, err)
				}
			}
			// A deleted key may be added again, under new tink key ids.
			if _, err := r.Add(k1); err != nil {
				t.Errorf("re-adding a deleted key: %v", err)
			}
			if !opens(ct1, "to k1") {
				t.Errorf("re-added key does not decrypt")
			}
		})
	}
}

func TestRingWrongSuite(t *testing.T) {
	if _, err := NewRing(nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("NewRing(nil): %v", err)
	}
	r, err := NewRing(hpkeX25519Suite)
	if err != nil {
		t.Fatal(err)
	}
	other := mustKey(t, eciesP256Suite)
	if _, err := r.Add(other); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Add(other suite's key): %v, want ErrWrongSuite", err)
	}
	k := mustKey(t, hpkeX25519Suite)
	id, _ := r.Add(k)
	if err := r.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Seal(nil, other.Public(), nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Seal to other suite's key: %v, want ErrWrongSuite", err)
	}
	if _, _, err := r.Open(id, other.Public(), nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Open from other suite's key: %v, want ErrWrongSuite", err)
	}
}

// Changes may race with Seal and Open (run with -race).
func TestRingConcurrent(t *testing.T) {
	s := hpkeX25519Suite
	client := mustKey(t, s)
	r, _ := NewRing(s)
	keys := []*privateKey{mustKey(t, s), mustKey(t, s), mustKey(t, s)}
	var ids []wire.KeyID
	for _, k := range keys {
		id, err := r.Add(k)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := r.SetPrimary(ids[0]); err != nil {
		t.Fatal(err)
	}
	ct, _, err := s.Seal(nil, keys[0].Public(), client, nil, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if _, _, err := r.Open(ids[0], client.Public(), nil, nil, ct); err != nil {
					t.Errorf("goroutine %d: Open: %v", g, err)
					return
				}
				if _, _, err := r.Seal(nil, client.Public(), nil, nil, fmt.Appendf(nil, "%d", i)); err != nil {
					t.Errorf("goroutine %d: Seal: %v", g, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			p := ids[1+i%2]
			if err := r.SetPrimary(p); err != nil {
				t.Errorf("SetPrimary: %v", err)
			}
			_ = r.Disable(ids[1+(i+1)%2])
			_ = r.Enable(ids[1+(i+1)%2])
		}
	})
	wg.Wait()
}
