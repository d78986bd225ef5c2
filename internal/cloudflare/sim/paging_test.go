package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// createMany creates n account tokens over HTTP from a few goroutines (which
// also exercises the simulator's locking) and returns their IDs in the
// simulator's creation order.
func createMany(t *testing.T, h *harness, n int, name func(i int) string) []string {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range work {
				r, err := h.send("POST", acct, jsonBody(map[string]any{"name": name(i)}), bearer)
				if err == nil && r.status != http.StatusCreated {
					err = fmt.Errorf("status %d: %s", r.status, r.raw)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range h.sim.Tokens() {
		ids = append(ids, tk.ID)
	}
	return ids
}

func TestPagingWalksEveryTokenOnceInCreationOrder(t *testing.T) {
	h := newHarness(t)
	want := createMany(t, h, 2500, func(i int) string { return fmt.Sprintf("tok-%04d", i) })

	for _, tc := range []struct {
		name      string
		query     string // before page=
		perPage   int
		wantPages int
	}{
		{"at the default per_page of 1000 in 3 pages", "", 1000, 3},
		{"at per_page 1000 in 3 pages", "per_page=1000&", 1000, 3},
		{"at per_page 100 in 25 pages", "per_page=100&", 100, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var got []string
			for page := 1; ; page++ {
				r := h.call("GET", fmt.Sprintf("%s?%spage=%d", acct, tc.query, page), "")
				g.Expect(r.status).To(Equal(http.StatusOK))
				info := r.env.ResultInfo
				g.Expect(info).NotTo(BeNil())
				g.Expect(info.Page).To(Equal(page))
				g.Expect(info.PerPage).To(Equal(tc.perPage))
				g.Expect(info.TotalCount).To(Equal(2500))
				g.Expect(info.TotalPages).To(Equal(tc.wantPages))
				items := r.tokens()
				g.Expect(info.Count).To(Equal(len(items)))
				for _, tk := range items {
					got = append(got, tk.ID)
				}
				if page == tc.wantPages {
					g.Expect(items).To(HaveLen(2500 - (tc.wantPages-1)*tc.perPage))
					break
				}
				g.Expect(items).To(HaveLen(tc.perPage))
			}
			g.Expect(got).To(Equal(want))
		})
	}

	t.Run("a page past the end is empty", func(t *testing.T) {
		g := NewWithT(t)
		r := h.call("GET", acct+"?page=4", "")
		g.Expect(r.status).To(Equal(http.StatusOK))
		g.Expect(r.tokens()).To(BeEmpty())
		g.Expect(r.env.ResultInfo.Count).To(Equal(0))
		g.Expect(r.env.ResultInfo.TotalPages).To(Equal(3))
	})

	t.Run("the name filter finds one token among 2500", func(t *testing.T) {
		g := NewWithT(t)
		r := h.call("GET", acct+"?name=tok-1234", "")
		g.Expect(r.tokens()).To(HaveLen(1))
		g.Expect(r.tokens()[0].Name).To(Equal("tok-1234"))
		g.Expect(r.env.ResultInfo.TotalCount).To(Equal(1))
		g.Expect(r.env.ResultInfo.TotalPages).To(Equal(1))
	})

	t.Run("listing is fast", func(t *testing.T) {
		g := NewWithT(t)
		start := time.Now()
		for page := 1; page <= 3; page++ {
			h.call("GET", fmt.Sprintf("%s?page=%d", acct, page), "")
		}
		// Generous: the validator checks every token of every page.
		g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second))
	})
}

func TestTheNameFilterMatchesExactlyAndSearchMatchesSubstrings(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"web", "web-2", "Web", "api", "web"} {
		h.create(jsonBody(map[string]any{"name": n}))
	}
	names := func(r reply) []string {
		var out []string
		for _, tk := range r.tokens() {
			out = append(out, tk.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"name is exact and case-sensitive", "name=web", []string{"web", "web"}},
		{"name with no match", "name=we", nil},
		{"search is a case-insensitive substring", "search=WEB", []string{"web", "web-2", "Web", "web"}},
		{"search and name together", "search=web&name=Web", []string{"Web"}},
		{"search matches the client ID too", "search=.access", []string{"web", "web-2", "Web", "api", "web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call("GET", acct+"?"+tc.query, "")
			g.Expect(r.status).To(Equal(http.StatusOK))
			g.Expect(names(r)).To(Equal(tc.want))
			g.Expect(r.env.ResultInfo.TotalCount).To(Equal(len(tc.want)))
		})
	}
}

func TestDeletedTokensLeaveThePagesAndOrderHolds(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	ids := createMany(t, h, 300, func(i int) string { return "same" })
	var keep []string
	for i, id := range ids {
		if i%3 == 0 {
			keep = append(keep, id)
			continue
		}
		g.Expect(h.call("DELETE", acct+"/"+id, "").status).To(Equal(http.StatusOK))
	}
	for _, q := range []string{"", "?name=same", "?per_page=7&page=1"} {
		r := h.call("GET", acct+q, "")
		var got []string
		for _, tk := range r.tokens() {
			got = append(got, tk.ID)
		}
		if q == "?per_page=7&page=1" {
			g.Expect(got).To(Equal(keep[:7]))
			g.Expect(r.env.ResultInfo.TotalPages).To(Equal(15))
			continue
		}
		g.Expect(got).To(Equal(keep), q)
		g.Expect(r.env.ResultInfo.TotalCount).To(Equal(100), q)
	}
}

func TestBadPagingParametersAreA400(t *testing.T) {
	h := newHarness(t)
	h.invalidRequests = true
	for _, q := range []string{"per_page=1001", "per_page=0", "page=0", "page=-1", "page=two", "per_page=1.5"} {
		t.Run(q, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call("GET", acct+"?"+q, "")
			g.Expect(r.status).To(Equal(http.StatusBadRequest))
			g.Expect(r.code()).To(Equal(CodeInvalidRequest))
			g.Expect(r.message()).To(MatchRegexp(`^(page|per_page) must be an integer from 1 to \d+, got`))
		})
	}
}

func TestTheZoneListIgnoresQueryParameters(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	for _, n := range []string{"a", "b", "c"} {
		g.Expect(h.call("POST", zone, jsonBody(map[string]any{"name": n})).status).To(Equal(http.StatusCreated))
	}
	r := h.call("GET", zone+"?per_page=1&page=2&name=a", "")
	g.Expect(r.status).To(Equal(http.StatusOK))
	g.Expect(r.tokens()).To(HaveLen(3))
	g.Expect(*r.env.ResultInfo).To(Equal(resultInfo{Page: 1, PerPage: 3, Count: 3, TotalCount: 3, TotalPages: 1}))
}

func TestZonePageSizePagesTheZoneListByPageAlone(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.ZonePageSize = 2 })
	var want []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		want = append(want, h.call("POST", zone, jsonBody(map[string]any{"name": n})).token().ID)
	}
	for _, tc := range []struct {
		name, query string
		want        []string
		info        resultInfo
	}{
		{"no page is page 1", "", want[:2], resultInfo{Page: 1, PerPage: 2, Count: 2, TotalCount: 5, TotalPages: 3}},
		{"page 2", "?page=2", want[2:4], resultInfo{Page: 2, PerPage: 2, Count: 2, TotalCount: 5, TotalPages: 3}},
		{"the last page", "?page=3", want[4:], resultInfo{Page: 3, PerPage: 2, Count: 1, TotalCount: 5, TotalPages: 3}},
		{"a page past the end is empty", "?page=4", nil, resultInfo{Page: 4, PerPage: 2, Count: 0, TotalCount: 5, TotalPages: 3}},
		{"per_page and name are ignored", "?page=1&per_page=5&name=c", want[:2], resultInfo{Page: 1, PerPage: 2, Count: 2, TotalCount: 5, TotalPages: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call("GET", zone+tc.query, "")
			g.Expect(r.status).To(Equal(http.StatusOK))
			var got []string
			for _, tk := range r.tokens() {
				got = append(got, tk.ID)
			}
			g.Expect(got).To(Equal(tc.want))
			g.Expect(*r.env.ResultInfo).To(Equal(tc.info))
		})
	}
	t.Run("a bad page is a 400", func(t *testing.T) {
		g := NewWithT(t)
		r := h.call("GET", zone+"?page=0", "")
		g.Expect(r.status).To(Equal(http.StatusBadRequest))
		g.Expect(r.message()).To(HavePrefix("page must be an integer"))
	})
	t.Run("the account list is unaffected", func(t *testing.T) {
		g := NewWithT(t)
		h.create(`{"name":"acct"}`)
		h.create(`{"name":"acct"}`)
		h.create(`{"name":"acct"}`)
		r := h.call("GET", acct, "")
		g.Expect(r.tokens()).To(HaveLen(3))
		g.Expect(r.env.ResultInfo.PerPage).To(Equal(1000))
	})
}

func TestOmitTotalPagesLeavesTheTotalsOutOfEveryList(t *testing.T) {
	for _, tc := range []struct {
		name      string
		zonePage  int
		list      string // before page=
		wantPages int    // pages before the empty one; 0: the list ignores page
	}{
		{"the account list", 0, acct + "?per_page=2&", 2},
		{"the paged zone list", 2, zone + "?", 2},
		{"the one-page zone list", 0, zone + "?", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t, func(o *Options) { o.OmitTotalPages, o.ZonePageSize = true, tc.zonePage })
			base, _, _ := strings.Cut(tc.list, "?")
			for range 3 {
				g.Expect(h.call("POST", base, `{"name":"x"}`).status).To(Equal(http.StatusCreated))
			}
			seen := 0
			for page := 1; page <= max(tc.wantPages+1, 1); page++ {
				r := h.call("GET", fmt.Sprintf("%spage=%d", tc.list, page), "")
				g.Expect(r.status).To(Equal(http.StatusOK))
				g.Expect(keys(rawResultInfo(r))).To(Equal([]string{"count", "page", "per_page"}), r.raw)
				g.Expect(r.env.ResultInfo.Count).To(Equal(len(r.tokens())))
				if page > tc.wantPages && tc.wantPages > 0 {
					g.Expect(r.tokens()).To(BeEmpty(), "the walk ends on an empty page")
				}
				seen += len(r.tokens())
			}
			g.Expect(seen).To(Equal(3))
		})
	}
}

// rawResultInfo returns an envelope's result_info as a JSON object.
func rawResultInfo(r reply) map[string]any {
	var env struct {
		ResultInfo map[string]any `json:"result_info"`
	}
	_ = json.Unmarshal([]byte(r.raw), &env)
	return env.ResultInfo
}

func BenchmarkListPageOf1000Among10000(b *testing.B) {
	s := New(Options{Accounts: []string{"a"}, RateLimit: RateLimit{Requests: -1}, Seed: 1})
	for i := range 10000 {
		s.create(route{op: OpCreate, scopeID: "a"}, []byte(fmt.Sprintf(`{"name":"t-%d"}`, i)))
	}
	for b.Loop() {
		r := s.list(route{op: OpList, scopeID: "a"}, map[string][]string{"page": {"5"}})
		if len(r.body.Result.([]tokenJSON)) != 1000 {
			b.Fatal("short page")
		}
	}
}
