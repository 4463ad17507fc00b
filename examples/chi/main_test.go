package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

var summaryRE = regexp.MustCompile(`^summary: requests=\d+ failed=0 client_rotations=([2-9]|\d\d+) server_rotations=([2-9]|\d\d+)$`)

func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; !summaryRE.MatchString(last) {
		t.Fatalf("last line %q does not match %v", last, summaryRE)
	}
	for _, want := range []string{
		"plain POST /api/notes -> 415 not-encrypted",
		"POST /api/notes -> 201 application/json",
		"GET /api/notes/1 -> 200 text/plain",
		"DELETE /api/notes/1 -> 204",
		"GET /api/notes/1 -> 404 text/plain",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Error("a request failed")
	}
}
