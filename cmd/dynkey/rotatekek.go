package main

import "errors"

// errNoRotateKEK: this build's middleware cannot re-seal a store.
var errNoRotateKEK = errors.New("kek rotate needs middleware.RotateKEK, which this build does not have yet (issue 7, item 3)")

// rotateKEK re-seals the store under newKey.
func rotateKEK(e *env, storeURL string, oldKey, newKey []byte) error {
	return errNoRotateKEK
}
