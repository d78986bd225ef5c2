package cloudflare

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	. "github.com/onsi/gomega"
)

func success(result string) string {
	return `{"success":true,"errors":[],"messages":[],"result":` + result + `}`
}

// recorded is one request as the server saw it.
type recorded struct {
	method, path string
	query        url.Values
	header       http.Header
	body         map[string]any
}

// recordingServer answers every request with respond and keeps what it saw.
func recordingServer(t *testing.T, respond func(r *http.Request) (int, string)) (*httptest.Server, func() []recorded) {
	var mu sync.Mutex
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := recorded{method: r.Method, path: strings.TrimPrefix(r.URL.Path, "/client/v4"), query: r.URL.Query(), header: r.Header.Clone()}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &rec.body); err != nil {
				t.Errorf("request body is not JSON: %q", b)
			}
		}
		mu.Lock()
		seen = append(seen, rec)
		mu.Unlock()
		status, body := respond(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded { mu.Lock(); defer mu.Unlock(); return append([]recorded(nil), seen...) }
}

func TestGetReadsRawFieldsAndDefaults(t *testing.T) {
	g := NewWithT(t)
	srv, _ := recordingServer(t, func(r *http.Request) (int, string) {
		if strings.HasSuffix(r.URL.Path, "/old") {
			// No "enabled" (older API) and a null expiry ("forever").
			return 200, success(`{"id":"old","client_id":"c.access","name":"n","duration":"forever","expires_at":null,
				"created_at":"2024-01-02T03:04:05Z","updated_at":"2024-02-03T04:05:06.5Z","last_seen_at":"2024-03-04T05:06:07Z"}`)
		}
		return 200, success(`{"id":"new","client_id":"d.access","name":"m","duration":"8760h","enabled":false,
			"expires_at":"2027-01-02T03:04:05Z","created_at":"2026-01-02T03:04:05Z"}`)
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})

	tok, err := c.Get(context.Background(), Scope{AccountID: testAccount}, "old")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).To(Equal(Token{
		ID: "old", ClientID: "c.access", Name: "n", Duration: "forever", Enabled: true, Missing: FieldEnabled,
		CreatedAt:  time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		UpdatedAt:  time.Date(2024, 2, 3, 4, 5, 6, 5e8, time.UTC),
		LastSeenAt: time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC),
	}))

	tok, err = c.Get(context.Background(), Scope{ZoneID: testZone}, "new")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Enabled).To(BeFalse())
	g.Expect(tok.ExpiresAt).To(Equal(time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)))
	g.Expect(tok.LastSeenAt.IsZero()).To(BeTrue())
}

func tokensJSON(from, to int, name func(i int) string) string {
	items := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		items = append(items, fmt.Sprintf(`{"id":"id-%d","client_id":"c%d.access","name":%q,"duration":"8760h","enabled":true}`, i, i, name(i)))
	}
	return "[" + strings.Join(items, ",") + "]"
}

func TestListPagesThroughAccount(t *testing.T) {
	for _, withTotal := range []bool{true, false} {
		t.Run(fmt.Sprintf("total_pages=%v", withTotal), func(t *testing.T) {
			g := NewWithT(t)
			const total = 2500
			srv, seen := recordingServer(t, func(r *http.Request) (int, string) {
				page, _ := strconv.Atoi(r.URL.Query().Get("page"))
				per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
				from, to := min((page-1)*per, total), min(page*per, total)
				// Overlap one item with the previous page, as a deletion
				// between two page requests would.
				if from > 0 {
					from--
				}
				body := `{"success":true,"errors":[],"messages":[],"result":` + tokensJSON(from, to, func(int) string { return "svc" })
				if withTotal {
					body += fmt.Sprintf(`,"result_info":{"page":%d,"per_page":%d,"count":%d,"total_count":%d,"total_pages":3}`, page, per, to-from, total)
				}
				return 200, body + "}"
			})
			c, _ := newTestClient(t, srv.URL, FactoryOptions{})

			toks, err := c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{Name: "svc"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(toks).To(HaveLen(total), "every token once")
			g.Expect(toks[total-1].ID).To(Equal(fmt.Sprintf("id-%d", total-1)))
			reqs := seen()
			g.Expect(reqs).To(HaveLen(3))
			for i, r := range reqs {
				g.Expect(r.query.Get("page")).To(Equal(strconv.Itoa(i + 1)))
				g.Expect(r.query.Get("per_page")).To(Equal("1000"))
				g.Expect(r.query.Get("name")).To(Equal("svc"))
			}
		})
	}
}

func TestListZoneTakesNoQueryAndFiltersLocally(t *testing.T) {
	g := NewWithT(t)
	srv, seen := recordingServer(t, func(*http.Request) (int, string) {
		return 200, success(tokensJSON(0, 5, func(i int) string { return []string{"a", "b"}[i%2] }))
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})

	toks, err := c.List(context.Background(), Scope{ZoneID: testZone}, ListOptions{Name: "a"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(toks).To(HaveLen(3))
	for _, tok := range toks {
		g.Expect(tok.Name).To(Equal("a"))
	}
	g.Expect(seen()).To(HaveLen(1))
	g.Expect(seen()[0].path).To(Equal("/zones/" + testZone + "/access/service_tokens"))
	g.Expect(seen()[0].query).To(BeEmpty())
}

func TestWriteRequestsAndResults(t *testing.T) {
	g := NewWithT(t)
	created := `{"id":"` + testTokenID + `","client_id":"c.access","client_secret":"s3cr3t","name":"n","duration":"24h","enabled":true,"created_at":"2026-09-01T12:00:00Z"}`
	srv, seen := recordingServer(t, func(r *http.Request) (int, string) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/service_tokens") {
			return 201, success(created)
		}
		return 200, success(created)
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	ctx := context.Background()

	creds, err := c.Create(ctx, Scope{AccountID: testAccount}, TokenSpec{Name: "n", Duration: "24h", Enabled: false})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.ClientSecret).To(Equal("s3cr3t"))
	g.Expect(creds.ID).To(Equal(testTokenID))
	g.Expect(creds.CreatedAt).To(Equal(testEpoch))
	g.Expect(fmt.Sprint(creds)).NotTo(ContainSubstring("s3cr3t"))

	_, err = c.Update(ctx, Scope{ZoneID: testZone}, testTokenID, TokenSpec{Name: "n2", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Rotate(ctx, testAccount, testTokenID, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	grace := time.Date(2026, 9, 2, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	creds, err = c.Rotate(ctx, testAccount, testTokenID, grace)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.ClientSecret).To(Equal("s3cr3t"))
	_, err = c.Refresh(ctx, testAccount, testTokenID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Delete(ctx, Scope{ZoneID: testZone}, testTokenID)).To(Succeed())

	reqs := seen()
	g.Expect(reqs).To(HaveLen(6))
	g.Expect(reqs[0].method).To(Equal(http.MethodPost))
	g.Expect(reqs[0].body).To(Equal(map[string]any{"name": "n", "duration": "24h", "enabled": false}))
	g.Expect(reqs[0].header.Get("Authorization")).To(Equal("Bearer " + testAPIToken))

	g.Expect(reqs[1].method).To(Equal(http.MethodPut))
	g.Expect(reqs[1].path).To(Equal("/zones/" + testZone + "/access/service_tokens/" + testTokenID))
	g.Expect(reqs[1].body).To(Equal(map[string]any{"name": "n2", "enabled": true}), "an empty duration is left alone")

	g.Expect(reqs[2].path).To(HaveSuffix("/rotate"))
	g.Expect(reqs[2].body).NotTo(HaveKey("previous_client_secret_expires_at"), "zero time revokes at once")
	g.Expect(reqs[3].body).To(Equal(map[string]any{"previous_client_secret_expires_at": "2026-09-02T10:00:00Z"}))

	g.Expect(reqs[4].path).To(Equal("/accounts/" + testAccount + "/access/service_tokens/" + testTokenID + "/refresh"))
	g.Expect(reqs[5].method).To(Equal(http.MethodDelete))
	g.Expect(reqs[5].path).To(Equal("/zones/" + testZone + "/access/service_tokens/" + testTokenID))
}

// A create whose 2xx carries no secret lost it: that is not a success.
func TestCreateWithoutSecretIsOutcomeUnknown(t *testing.T) {
	g := NewWithT(t)
	srv, _ := recordingServer(t, func(*http.Request) (int, string) {
		return 201, success(`{"id":"` + testTokenID + `","client_id":"c.access","name":"n"}`)
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	_, err := c.Create(context.Background(), Scope{AccountID: testAccount}, TokenSpec{Name: "n"})
	g.Expect(KindOf(err)).To(Equal(KindOutcomeUnknown))
	g.Expect(err.(*Error).HTTPStatus).To(Equal(201))
}

func TestAPIKeyAuthentication(t *testing.T) {
	g := NewWithT(t)
	srv, seen := recordingServer(t, func(*http.Request) (int, string) { return 200, success(`[]`) })
	f := NewFactory(FactoryOptions{})
	c, err := f.ClientFor(AccountConfig{Key: "k", BaseURL: srv.URL + "/client/v4", APIKey: "legacy-key", Email: "ops@example.com"})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	h := seen()[0].header
	g.Expect(h.Get("X-Auth-Key")).To(Equal("legacy-key"))
	g.Expect(h.Get("X-Auth-Email")).To(Equal("ops@example.com"))
	g.Expect(h.Get("Authorization")).To(BeEmpty())
}

// Without total_pages, full pages are followed until an empty one (as the
// SDK's auto-pager and Terraform do).
func TestListStopsOnAnEmptyPage(t *testing.T) {
	g := NewWithT(t)
	const total = 2000 // two full pages
	srv, seen := recordingServer(t, func(r *http.Request) (int, string) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		from, to := min((page-1)*1000, total), min(page*1000, total)
		return 200, fmt.Sprintf(`{"success":true,"errors":[],"messages":[],"result":%s,"result_info":{"page":%d,"per_page":1000,"count":%d}}`,
			tokensJSON(from, to, func(int) string { return "svc" }), page, to-from)
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	toks, err := c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(toks).To(HaveLen(total))
	g.Expect(seen()).To(HaveLen(3), "two full pages and the empty one")
}

// A list that read fewer tokens than result_info.total_count counted (pages
// shifted while others deleted) is refused: a token missing from it must not
// look deleted.
func TestListRefusesFewerTokensThanTotalCount(t *testing.T) {
	g := NewWithT(t)
	srv, _ := recordingServer(t, func(r *http.Request) (int, string) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page > 1 {
			return 200, `{"success":true,"errors":[],"messages":[],"result":[],"result_info":{"page":2,"per_page":1000,"count":0,"total_count":1001,"total_pages":2}}`
		}
		return 200, `{"success":true,"errors":[],"messages":[],"result":` + tokensJSON(0, 1000, func(int) string { return "svc" }) +
			`,"result_info":{"page":1,"per_page":1000,"count":1000,"total_count":1001,"total_pages":2}}`
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	toks, err := c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindTransient))
	g.Expect(err.Error()).To(ContainSubstring("incomplete list: 1000 tokens read, result_info.total_count says 1001"))
	g.Expect(toks).To(BeNil())
}

// A zone list that answers in pages is followed with ?page=N, although the
// schema documents no query parameters for it.
func TestListZoneFollowsResultInfo(t *testing.T) {
	g := NewWithT(t)
	srv, seen := recordingServer(t, func(r *http.Request) (int, string) {
		page := 1
		if p := r.URL.Query().Get("page"); p != "" {
			page, _ = strconv.Atoi(p)
		}
		from, to := min((page-1)*2, 5), min(page*2, 5)
		return 200, fmt.Sprintf(`{"success":true,"errors":[],"messages":[],"result":%s,"result_info":{"page":%d,"per_page":2,"count":%d,"total_count":5,"total_pages":3}}`,
			tokensJSON(from, to, func(int) string { return "z" }), page, to-from)
	})
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	toks, err := c.List(context.Background(), Scope{ZoneID: testZone}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(toks).To(HaveLen(5))
	reqs := seen()
	g.Expect(reqs).To(HaveLen(3))
	g.Expect(reqs[0].query).To(BeEmpty(), "the first request is the documented one")
	g.Expect(reqs[2].query.Get("page")).To(Equal("3"))
}

// Every field of a token is optional: what an answer leaves out is marked
// missing, and Fill takes it from the last known state of the same token.
func TestMissingFieldsKeepTheLastKnownValue(t *testing.T) {
	g := NewWithT(t)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lean := tokenFromJSON(`{"id":"t","client_id":"c.access","client_secret":"s","created_at":"2026-01-02T03:04:05Z"}`)
	g.Expect(lean.Missing).To(Equal(FieldName | FieldDuration | FieldEnabled | FieldExpiresAt | FieldUpdatedAt))
	g.Expect(lean.Knows(FieldCreatedAt)).To(BeTrue())

	known := Token{ID: "t", Name: "n", Duration: "720h", Enabled: false, ExpiresAt: created.Add(720 * time.Hour), UpdatedAt: created}
	filled := lean.Fill(known)
	g.Expect(filled).To(Equal(Token{ID: "t", ClientID: "c.access", Name: "n", Duration: "720h", Enabled: false,
		ExpiresAt: created.Add(720 * time.Hour), CreatedAt: created, UpdatedAt: created}))
	g.Expect(lean.Fill(Token{ID: "other", Name: "x"})).To(Equal(lean), "another token's state is never used")

	forever := tokenFromJSON(`{"id":"f","duration":"forever","enabled":true,"name":"n","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`)
	g.Expect(forever.Knows(FieldExpiresAt)).To(BeTrue(), "a forever token's absent expiry is known: none")
}

// A token read from a list page must not point into it: the inventory keeps
// tokens for hours, and a substring would keep the whole page alive.
func TestTokenFromJSONKeepsNoPartOfTheAnswer(t *testing.T) {
	g := NewWithT(t)
	raw := `{"id":"4a7b0c2e-0000-4000-8000-000000000001","client_id":"0123456789abcdef0123456789abcdef.access",` +
		`"name":"ns/app#1f0c7a0e-1111-4222-8333-444455556666","duration":"8760h","enabled":true}`
	start := uintptr(unsafe.Pointer(unsafe.StringData(raw)))
	within := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return p >= start && p < start+uintptr(len(raw))
	}
	tok := tokenFromJSON(raw)
	g.Expect(tok.Name).To(Equal("ns/app#1f0c7a0e-1111-4222-8333-444455556666"))
	for field, s := range map[string]string{"id": tok.ID, "client_id": tok.ClientID, "name": tok.Name, "duration": tok.Duration} {
		g.Expect(s).NotTo(BeEmpty(), field)
		g.Expect(within(s)).To(BeFalse(), "%s points into the raw answer", field)
	}
}

// Vouch's proofs depend on the credentials and on every part, survive a new
// client (restart, another replica) and give nothing of the credentials away.
func TestVouchIsBoundToTheCredentialsAndTheParts(t *testing.T) {
	g := NewWithT(t)
	client := func(key, token string) Client {
		c, err := NewFactory(FactoryOptions{}).ClientFor(AccountConfig{Key: key, BaseURL: "https://api.cloudflare.com/client/v4", APIToken: token})
		g.Expect(err).NotTo(HaveOccurred())
		return c
	}
	const token = "vouch-test-api-token-0123456789"
	a, again, other := client("a", token), client("b", token), client("a", token+"x")
	proof := a.Vouch("uid-1", "token-1")
	g.Expect(proof).To(HaveLen(32))
	g.Expect(again.Vouch("uid-1", "token-1")).To(Equal(proof), "the same credentials make the same proof")
	g.Expect(other.Vouch("uid-1", "token-1")).NotTo(Equal(proof), "other credentials cannot make it")
	g.Expect(a.Vouch("uid-2", "token-1")).NotTo(Equal(proof))
	g.Expect(a.Vouch("uid-1", "token-2")).NotTo(Equal(proof))
	g.Expect(a.Vouch("uid-1token-1")).NotTo(Equal(proof), "parts are separated")
	g.Expect(proof).NotTo(ContainSubstring(token[:8]))
}
