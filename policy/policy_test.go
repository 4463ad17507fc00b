package policy_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/policy"
)

func TestDecide(t *testing.T) {
	noon := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		p    string
		f    policy.Facts
		want policy.Decision
	}{
		{"uptime below", "uptime>=24h", policy.Facts{Age: 23 * time.Hour}, policy.Keep},
		{"uptime at", "uptime>=24h", policy.Facts{Age: 24 * time.Hour}, policy.Rotate},
		{"offset growth", "offset_growth>=1h", policy.Facts{OffsetGrowth: time.Hour, Age: time.Second}, policy.Rotate},
		{"offset growth ignores age", "offset_growth>=1h", policy.Facts{Age: 2 * time.Hour}, policy.Keep},
		{"messages", "messages>=3", policy.Facts{Messages: 3}, policy.Rotate},
		{"bytes below", "bytes>=1GB", policy.Facts{Bytes: 999_999_999}, policy.Keep},
		{"bytes at", "bytes>=1GB", policy.Facts{Bytes: 1_000_000_000}, policy.Rotate},
		{"manual", "manual", policy.Facts{Age: 1000 * time.Hour, Messages: 1 << 60}, policy.Keep},
		{"or", "age>=1h or messages>=10", policy.Facts{Messages: 10}, policy.Rotate},
		{"and needs both", "age>=1h and messages>=10", policy.Facts{Messages: 10}, policy.Keep},
		{"and both", "age>=1h and messages>=10", policy.Facts{Messages: 10, Age: time.Hour}, policy.Rotate},
		{"reject soft first", "age>=2m or reject(age>=3m)", policy.Facts{Age: 150 * time.Second}, policy.Rotate},
		{"reject hard", "age>=2m or reject(age>=3m)", policy.Facts{Age: 3 * time.Minute}, policy.Reject},
		{"daily key from yesterday", "daily@03:00", policy.Facts{Now: noon, Age: 10 * time.Hour}, policy.Rotate},
		{"daily key from today", "daily@03:00", policy.Facts{Now: noon, Age: 8 * time.Hour}, policy.Keep},
		{"daily before the time today", "daily@13:00", policy.Facts{Now: noon, Age: 20 * time.Hour}, policy.Keep},
		{"daily before the time, old key", "daily@13:00", policy.Facts{Now: noon, Age: 24 * time.Hour}, policy.Rotate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policy.Parse(tt.p)
			require.NoError(t, err)
			require.Equal(t, tt.want, p.Decide(tt.f))
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, s := range []string{
		"uptime>=24h",
		"offset_growth>=1h or messages>=100000",
		"age>=2m or reject(age>=3m)",
		"jitter(10%, age>=24h) or daily@03:00",
		"bytes>=1GiB or bytes>=500MB or bytes>=1234",
		"(age>=1h or messages>=5) and bytes>=1KB",
		"manual",
		"age>=1h30m",
		"reject(age>=1h and messages>=2)",
	} {
		t.Run(s, func(t *testing.T) {
			p, err := policy.Parse(s)
			require.NoError(t, err)
			require.Equal(t, s, p.String())
			p2, err := policy.Parse(p.String())
			require.NoError(t, err)
			require.Equal(t, p.String(), p2.String())
		})
	}
	// Non-canonical inputs parse to a canonical string that is stable.
	p := policy.MustParse("age>=90s  or  messages>=7")
	require.Equal(t, "age>=1m30s or messages>=7", p.String())
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, token string }{
		{"", "empty"},
		{"uptim>=24h", `"uptim"`},
		{"uptime>=soon", `"soon"`},
		{"uptime>=-1h", `"-1h"`},
		{"messages>=0", `"0"`},
		{"bytes>=1XB", `"1XB"`},
		{"age>=1h or", "end"},
		{"age>=1h or or", `"or"`},
		{"(age>=1h", `")"`},
		{"age>=1h)", `")"`},
		{"reject age>=1h", `"("`},
		{"jitter(200%, age>=1h)", `"200%"`},
		{"jitter(10, age>=1h)", `"10"`},
		{"daily@25:00", `"daily@25:00"`},
		{"daily@3:00", `"daily@3:00"`},
		{"age=1h", `"age=1h"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := policy.Parse(tt.in)
			require.Error(t, err)
			require.True(t, errors.Is(err, policy.ErrSyntax))
			require.Contains(t, err.Error(), tt.token)
		})
	}
}

func TestJitterSpreadsKeys(t *testing.T) {
	p := policy.MustParse("jitter(20%, age>=100s)")
	early := 0
	for i := range 200 {
		f := policy.Facts{Age: 90 * time.Second, KeyID: []byte(fmt.Sprint(i))}
		if p.Decide(f) == policy.Rotate {
			early++
		}
		// Never earlier than 1/(1+20%) of the limit, never later than it.
		f.Age = 83 * time.Second
		require.Equal(t, policy.Keep, p.Decide(f))
		f.Age = 100 * time.Second
		require.Equal(t, policy.Rotate, p.Decide(f))
	}
	// At 90s a key rotates iff its factor is ≥ 1.111: about 44% of keys.
	require.InDelta(t, 88, early, 30)
	// Deterministic per key.
	f := policy.Facts{Age: 90 * time.Second, KeyID: []byte("k")}
	require.Equal(t, p.Decide(f), p.Decide(f))
}

func TestDecisionString(t *testing.T) {
	require.Equal(t, "keep", policy.Keep.String())
	require.Equal(t, "rotate", policy.Rotate.String())
	require.Equal(t, "reject", policy.Reject.String())
}

// A custom policy is two methods.
type workHours struct{}

func (workHours) Decide(f policy.Facts) policy.Decision {
	if h := f.Now.UTC().Hour(); h >= 9 && h < 17 && f.Age > time.Hour {
		return policy.Rotate
	}
	return policy.Keep
}
func (workHours) String() string { return "work-hours" }

func Example() {
	p := policy.AnyOf(policy.MustParse("offset_growth>=1h or reject(offset_growth>=2h)"), workHours{})
	fmt.Println(p)
	fmt.Println(p.Decide(policy.Facts{OffsetGrowth: 90 * time.Minute}))
	fmt.Println(p.Decide(policy.Facts{OffsetGrowth: 3 * time.Hour}))
	// Output:
	// offset_growth>=1h or reject(offset_growth>=2h) or work-hours
	// rotate
	// reject
}
