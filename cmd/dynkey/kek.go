package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

func runKEKNew(e *env, args []string) error {
	fs := newFlags(e, "dynkey kek new", "[-format hex|base64] [-o FILE [-force]]", `
Makes a fresh random 32-byte key-encryption key (the KEK that seals the
server's private keys, token keys and identity key in the store) and prints
it, or writes it to FILE with mode 0600. Give every server instance of a
cluster the same key (middleware.Options.KeyEncryptionKey), from a file or an
environment variable; keep it in your secret manager.`)
	format := fs.String("format", "hex", "encoding: hex or base64")
	out := fs.String("o", "", "write to this file (mode 0600) instead of stdout")
	force := fs.Bool("force", false, "with -o, replace an existing file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	key := make([]byte, kekSize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	defer clear(key)
	var text string
	switch *format {
	case "hex":
		text = hex.EncodeToString(key)
	case "base64":
		text = base64.StdEncoding.EncodeToString(key)
	default:
		return usagef("dynkey kek new: -format must be hex or base64, not %q", *format)
	}
	if *out == "" {
		_, err := fmt.Fprintln(e.stdout, text)
		return err
	}
	if err := writeSecretFile(*out, []byte(text+"\n"), *force); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote a new key-encryption key to %s (mode 0600)\n", *out)
	return nil
}

// writeSecretFile writes data to path with mode 0600. Without force an
// existing file is an error; with force it is replaced atomically (a new
// file renamed over it, so its old mode does not carry over).
func writeSecretFile(path string, data []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite a key (use -force to replace it)", path)
		}
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dynkey-kek-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func runKEKRotate(e *env, args []string) error {
	fs := newFlags(e, "dynkey kek rotate", "-store URL (-old-kek-file FILE | -old-kek-env VAR) (-new-kek-file FILE | -new-kek-env VAR)", `
Re-seals every record of the store under a new key-encryption key: the key
ring's secrets (identity key, server private keys, token keys) and the
authentication of the ring and of every session. The old key is accepted only
while re-sealing: afterwards a stolen old key opens nothing the store holds.
See docs/OPERATIONS.md, "Rotating the key-encryption key", for the order of
steps in a cluster.`)
	storeURL := fs.String("store", "", "store URL: "+storeForms)
	oldK := addKEKFlags(fs, "old-", "current")
	newK := addKEKFlags(fs, "new-", "new")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *storeURL == "" {
		return usagef("missing -store URL (%s)", storeForms)
	}
	oldKey, err := oldK.load(e)
	if err != nil {
		return err
	}
	newKey, err := newK.load(e)
	if err != nil {
		return err
	}
	if bytes.Equal(oldKey, newKey) {
		return usagef("dynkey kek rotate: the old and the new key-encryption keys are the same key")
	}
	return rotateKEK(e, *storeURL, oldKey, newKey)
}
