package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

func TestFlagsBecomeOptions(t *testing.T) {
	g := NewWithT(t)
	c, err := parseFlags([]string{
		"--listen", "127.0.0.1:0", "--accounts", "a1, a2", "--zones", "z1",
		"--api-tokens", "w,r:read", "--api-keys", "ops@example.com:k1",
		"--rate-limit", "10/1m", "--latency", "5ms", "--fault-rate", "0.25",
		"--fault-kinds", "5xx,drop-response", "--seed", "7",
		"--refresh-mode", "duration-from-now", "--lockout", "90s", "--outside-fraction", "0.25, ops@example.com=0.5",
		"--zone-page-size", "50", "--omit-total-pages",
	}, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.listen).To(Equal("127.0.0.1:0"))
	g.Expect(c.opts.Accounts).To(Equal([]string{"a1", "a2"}))
	g.Expect(c.opts.Zones).To(Equal([]string{"z1"}))
	g.Expect(c.opts.APITokens).To(Equal([]sim.APIToken{{Token: "w"}, {Token: "r", ReadOnly: true}}))
	g.Expect(c.opts.APIKeys).To(Equal([]sim.APIKey{{Email: "ops@example.com", Key: "k1"}}))
	g.Expect(c.opts.RateLimit).To(Equal(sim.RateLimit{Requests: 10, Period: time.Minute}))
	g.Expect(c.opts.Latency).To(Equal(5 * time.Millisecond))
	g.Expect(c.opts.Faults.Rate).To(Equal(0.25))
	g.Expect(c.opts.Faults.Kinds).To(Equal([]sim.FaultKind{sim.Fault5xx, sim.FaultDropResponse}))
	g.Expect(c.opts.Seed).To(Equal(int64(7)))
	g.Expect(c.opts.Refresh).To(Equal(sim.RefreshDurationFromNow))
	g.Expect(c.opts.Lockout).To(Equal(90 * time.Second))
	g.Expect(c.opts.Outside).To(Equal([]sim.OutsideConsumer{{Fraction: 0.25}, {User: "ops@example.com", Fraction: 0.5}}))
	g.Expect(c.opts.ZonePageSize).To(Equal(50))
	g.Expect(c.opts.OmitTotalPages).To(BeTrue())

	users, err := parseFlags([]string{"--api-tokens", "w@ops@example.com, r@ops@example.com:read,solo:write"}, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(users.opts.APITokens).To(Equal([]sim.APIToken{
		{Token: "w", User: "ops@example.com"}, {Token: "r", ReadOnly: true, User: "ops@example.com"}, {Token: "solo"},
	}))

	def, err := parseFlags(nil, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(def.listen).To(Equal("127.0.0.1:8787"))
	g.Expect(def.opts.RateLimit).To(Equal(sim.RateLimit{Requests: 1200, Period: 5 * time.Minute}))
	g.Expect(def.opts.Refresh).To(Equal(sim.RefreshYearFromExpiry))
	g.Expect(def.opts.Lockout).To(Equal(5 * time.Minute))
	g.Expect(def.opts.Outside).To(BeEmpty())
	g.Expect(def.opts.ZonePageSize).To(BeZero())
	g.Expect(def.opts.OmitTotalPages).To(BeFalse())

	for _, m := range sim.RefreshModes() {
		c, err := parseFlags([]string{"--refresh-mode", string(m)}, io.Discard)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.opts.Refresh).To(Equal(m))
	}

	for _, off := range []string{"0", "none", "0/1m"} {
		c, err := parseFlags([]string{"--rate-limit", off}, io.Discard)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.opts.RateLimit.Unlimited()).To(BeTrue(), off)
	}
}

func TestBadFlagsAreRejectedWithoutEchoingKeys(t *testing.T) {
	for _, args := range [][]string{
		{"--rate-limit", "fast"},
		{"--fault-rate", "1.5"},
		{"--fault-kinds", "gremlins"},
		{"--api-keys", "secretkeywithoutemail"},
		{"--api-keys", "ops@example.com:secretkey-with-dashes"},
		{"--api-keys", "secretkeywithoutemail:abc"},
		{"--api-tokens", "secretkey with space"},
		{"--api-tokens", "secretkey@"},
		{"--api-tokens", "secretkey:read@ops"},
		{"--refresh-from-now"},
		{"--refresh-mode", "sometimes"},
		{"--lockout", "0s"},
		{"--zone-page-size", "-1"},
		{"--outside-fraction", "1.5"},
		{"--outside-fraction", "secretkey=lots"},
		{"--outside-fraction", "=0.5"},
		{"stray"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			g := NewWithT(t)
			_, err := parseFlags(args, io.Discard)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).NotTo(ContainSubstring("secretkey"))
		})
	}
}

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesLogsOneLineWithoutCredentialsAndStops(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--accounts", "acc", "--api-tokens", "tok-SECRET-1",
			"--api-keys", "ops@example.com:keySECRET2"}, io.Discard, &logs, ready)
	}()
	var url string
	g.Eventually(ready, 10*time.Second).Should(Receive(&url))

	req, _ := http.NewRequest("POST", url+"/client/v4/accounts/acc/access/service_tokens", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Authorization", "Bearer tok-SECRET-1")
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusCreated))

	cancel()
	g.Eventually(done, 10*time.Second).Should(Receive(BeNil()))
	out := logs.String()
	g.Expect(out).To(ContainSubstring("cfsim: serving " + url + "/client/v4"))
	g.Expect(strings.Count(out, "\n")).To(Equal(2), "the start line and the stop line:\n"+out)
	g.Expect(out).NotTo(ContainSubstring("SECRET"))
	g.Expect(out).NotTo(ContainSubstring("cfast_"))
	g.Expect(string(body)).To(ContainSubstring("cfast_"))
}
