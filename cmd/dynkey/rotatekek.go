package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynkey/dynkey/middleware"
)

// rotateKEK re-seals the store under newKey with middleware.RotateKEK, then
// checks that the store opens with newKey alone and no longer with oldKey.
func rotateKEK(e *env, storeURL string, oldKey, newKey []byte) error {
	st, err := openStore(e.ctx, storeURL, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ring, err := readRing(e.ctx, st)
	if err != nil {
		return err
	}
	m, err := openMiddleware(e, st, newKey, ring, func(o *middleware.Options) {
		o.PreviousKeyEncryptionKeys = [][]byte{oldKey}
	})
	if err != nil {
		return fmt.Errorf("%w (is -old-kek-… the store's current key-encryption key?)", err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Minute)
	defer cancel()
	if err := m.RotateKEK(ctx, newKey); err != nil {
		if errors.Is(err, middleware.ErrStoreCannotList) {
			return fmt.Errorf("%s: this store cannot list its records, so they cannot all be re-sealed: %w", redactURL(storeURL), err)
		}
		return fmt.Errorf("re-sealing: %w", err)
	}
	// The store now opens with the new key alone…
	check, err := openMiddleware(e, st, newKey, ring, func(o *middleware.Options) { o.Logger = discardLogger() })
	if err != nil {
		return fmt.Errorf("after re-sealing, the store does not open with the new key: %w", err)
	}
	check.Close()
	// …and no longer with the old one.
	if old, err := openMiddleware(e, st, oldKey, ring, func(o *middleware.Options) { o.Logger = discardLogger() }); err == nil {
		old.Close()
		return errors.New("after re-sealing, the store still opens with the old key")
	}
	fmt.Fprintf(e.stdout, "re-sealed %s under the new key-encryption key; the old one opens nothing it holds\n", redactURL(storeURL))
	return nil
}
