package postgres_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dynkey/dynkey/store/postgres"
)

// Open a store by URL; its tables are created in schema "dynkey" if absent.
func ExampleOpen() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://dynkey:secret@db.internal:5432/app?sslmode=verify-full&schema=dynkey")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// Share a pool you configured yourself.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://dynkey@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	s, err := postgres.New(ctx, pool, postgres.Options{Schema: "dynkey"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // leaves the pool open: the caller owns it
}
