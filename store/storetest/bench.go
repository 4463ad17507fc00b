package storetest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/dynkey/dynkey/store"
)

// SessionKey returns the i-th key of a session as the middleware names it:
// "dynkey/session/" and 32 hex digits.
func SessionKey(i int) string {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return "dynkey/session/" + hex.EncodeToString(id[:])
}

// MessageID returns the i-th message id as the middleware records it with
// MarkSeen: "dynkey/msg/u-" + 32 hex digits of the user scope + "/" + 32 hex
// digits of the 16-byte message id.
func MessageID(i int) string {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return "dynkey/msg/u-0123456789abcdef0123456789abcdef/" + hex.EncodeToString(id[:])
}

// SessionValue returns a session record of the size the middleware writes
// for the default suite (ecies-x25519: 32-byte client keys) just after a
// client key rotation, when it holds both the current and the previous key:
// about 290 bytes of JSON.
func SessionValue() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	prev := make([]byte, 32)
	_, _ = rand.Read(prev)
	ms := strconv.FormatInt(time.Now().UnixMilli(), 10)
	return []byte(`{"username":"alice@example.com","suite":"ecies-x25519","client_key":"` +
		base64.StdEncoding.EncodeToString(key) + `","key_installed":` + ms + `,"prev_key":"` +
		base64.StdEncoding.EncodeToString(prev) + `","prev_until":` + ms + `,"prev_installed":` + ms +
		`,"expires":` + ms + `}`)
}

// Bench runs one benchmark per operation of the request path on s: Get of a
// session, CompareAndSwap of a session (a client key rotation), MarkSeen of
// a new message id (every request), Delete. If roundTrips is not nil it
// returns the number of round trips to the server so far (commands sent to
// Redis, statements to PostgreSQL), reported as the metric roundtrips/op.
// The store must be empty and is left with b.N entries per benchmark.
func Bench(b *testing.B, s store.Store, roundTrips func() int64) {
	ctx := b.Context()
	value := SessionValue()
	exp := time.Now().Add(time.Hour)
	measure := func(b *testing.B, fn func(i int) error) {
		b.Helper()
		var before int64
		if roundTrips != nil {
			before = roundTrips()
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if err := fn(i); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if roundTrips != nil {
			b.ReportMetric(float64(roundTrips()-before)/float64(b.N), "roundtrips/op")
		}
	}
	b.Run("Get", func(b *testing.B) {
		key := SessionKey(-1)
		if _, err := s.CompareAndSwap(ctx, key, 0, value, exp); err != nil {
			b.Fatal(err)
		}
		measure(b, func(int) error {
			_, err := s.Get(ctx, key)
			return err
		})
	})
	b.Run("CompareAndSwap", func(b *testing.B) {
		key := SessionKey(-2)
		measure(b, func(i int) error {
			_, err := s.CompareAndSwap(ctx, key, uint64(i), value, exp)
			return err
		})
	})
	b.Run("MarkSeen", func(b *testing.B) {
		base := int(time.Now().UnixNano() & (1<<62 - 1)) // ids new to this run
		measure(b, func(i int) error {
			first, err := s.MarkSeen(ctx, MessageID(base+i), exp)
			if err == nil && !first {
				b.Fatal("new id seen already")
			}
			return err
		})
	})
	b.Run("Delete", func(b *testing.B) {
		measure(b, func(i int) error {
			return s.Delete(ctx, SessionKey(i))
		})
	})
}
