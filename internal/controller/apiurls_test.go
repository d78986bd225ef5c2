package controller

import (
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestAPIURLAllowList(t *testing.T) {
	list, err := NewAPIURLAllowList([]string{"https://api.cloudflare.com/", "https://proxy.corp.example/cloudflare/client/v4", "http://127.0.0.1:8080/"},
		"https://egress.example/cf/")
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	cases := map[string]struct {
		url     string
		allowed bool
	}{
		"Cloudflare's API":                                 {"https://api.cloudflare.com/client/v4", true},
		"Cloudflare's API without a path":                  {"https://api.cloudflare.com", true},
		"Cloudflare's API with its default port":           {"https://api.cloudflare.com:443/client/v4", true},
		"Cloudflare's API in upper case":                   {"HTTPS://API.Cloudflare.COM/client/v4", true},
		"the default API URL, always allowed":              {"https://egress.example/cf/client/v4", true},
		"a path below a path prefix":                       {"https://proxy.corp.example/cloudflare/client/v4/accounts", true},
		"exactly the path prefix":                          {"https://proxy.corp.example/cloudflare/client/v4", true},
		"a simulator on the allowed port":                  {"http://127.0.0.1:8080/client/v4", true},
		"a host that only starts with the allowed host":    {"https://api.cloudflare.com.evil.com/client/v4", false},
		"user info that makes another host the real one":   {"https://api.cloudflare.com@evil.com/client/v4", false},
		"user info in front of the allowed host":           {"https://user:pass@api.cloudflare.com/client/v4", false},
		"plain http to an https prefix":                    {"http://api.cloudflare.com/client/v4", false},
		"another port":                                     {"https://api.cloudflare.com:8443/client/v4", false},
		"a simulator on another port":                      {"http://127.0.0.1:9090/client/v4", false},
		"a path that only starts with the prefix's string": {"https://proxy.corp.example/cloudflare/client/v40", false},
		"a sibling path":                                   {"https://proxy.corp.example/other/client/v4", false},
		"dot segments climbing out of the prefix":          {"https://proxy.corp.example/cloudflare/client/v4/../../../other", false},
		"encoded dot segments":                             {"https://proxy.corp.example/cloudflare/client/v4/%2e%2e/%2e%2e/x", false},
		"another host":                                     {"https://evil.com/client/v4", false},
		"not a URL":                                        {"::", false},
		"another scheme":                                   {"ftp://api.cloudflare.com/", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(list.Allowed(c.url)).To(Equal(c.allowed), c.url)
		})
	}
}

func TestAPIURLAllowListRefusesBadPrefixes(t *testing.T) {
	for name, prefix := range map[string]string{
		"no scheme":    "api.cloudflare.com",
		"no host":      "https:///client/v4",
		"user info":    "https://me@api.cloudflare.com/",
		"a query":      "https://api.cloudflare.com/?x=1",
		"a fragment":   "https://api.cloudflare.com/#x",
		"dot segments": "https://api.cloudflare.com/a/../",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewAPIURLAllowList([]string{prefix})
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}
	t.Run("an empty list", func(t *testing.T) {
		_, err := NewAPIURLAllowList(SplitAPIURLs(" , "))
		NewWithT(t).Expect(err).To(HaveOccurred())
	})
	t.Run("an empty flag still allows the default API URL", func(t *testing.T) {
		g := NewWithT(t)
		list, err := NewAPIURLAllowList(SplitAPIURLs(""), "https://api.cloudflare.com/client/v4")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list.Allowed("https://api.cloudflare.com/client/v4")).To(BeTrue())
		g.Expect(list.Allowed("https://api.cloudflare.com/other")).To(BeFalse())
	})
}

// FuzzAPIURLAllowList: whatever URL an account names, an allowed one goes to
// the allowed host, over the allowed scheme, without user info.
func FuzzAPIURLAllowList(f *testing.F) {
	for _, s := range []string{"https://api.cloudflare.com/client/v4", "https://api.cloudflare.com.evil.com/",
		"https://api.cloudflare.com@evil.com/", "https://api.cloudflare.com%2eevil.com/", "https://api.cloudflare.com\\@evil.com/",
		"https://[::1]:443/", "https://api.cloudflare.com:443@evil.com/", "https://API.cloudflare.com./x"} {
		f.Add(s)
	}
	list, err := NewAPIURLAllowList([]string{DefaultAllowedAPIURLs})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !list.Allowed(raw) {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("allowed %q, which does not parse: %v", raw, err)
		}
		if strings.ToLower(u.Scheme) != "https" || !strings.EqualFold(u.Hostname(), "api.cloudflare.com") || u.User != nil ||
			(u.Port() != "" && u.Port() != "443") {
			t.Fatalf("allowed %q: scheme %q host %q port %q", raw, u.Scheme, u.Hostname(), u.Port())
		}
	})
}
