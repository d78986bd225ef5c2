package controller

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultAllowedAPIURLs is the manager's --allowed-api-urls default:
// Cloudflare's API only.
const DefaultAllowedAPIURLs = "https://api.cloudflare.com/"

// APIURLAllowList holds the URL prefixes accounts may send their credentials
// to (--allowed-api-urls). Whoever may edit an account object chooses where
// its credentials go; the allow-list, set by the operator's admin, bounds
// that choice. A prefix matches on parsed parts, never on the string: the
// scheme and host (with port) must be equal and the path must start with the
// prefix's path at a segment boundary, so https://api.cloudflare.com.evil.com/
// or https://api.cloudflare.com@evil.com/ never match https://api.cloudflare.com/.
type APIURLAllowList struct {
	prefixes []urlPrefix
}

type urlPrefix struct {
	raw, scheme, host, path string
}

// NewAPIURLAllowList parses the prefixes (each an absolute http(s) URL
// without user info, query or fragment). always are allowed too (the
// --default-api-url); empty entries are skipped.
func NewAPIURLAllowList(prefixes []string, always ...string) (*APIURLAllowList, error) {
	l := &APIURLAllowList{}
	for _, raw := range append(append([]string(nil), prefixes...), always...) {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		p, err := parseAPIURL(raw)
		if err != nil {
			return nil, fmt.Errorf("allowed API URL %q: %w", raw, err)
		}
		if p.rawQuery != "" || p.fragment {
			return nil, fmt.Errorf("allowed API URL %q: a prefix has no query or fragment", raw)
		}
		l.prefixes = append(l.prefixes, urlPrefix{raw: raw, scheme: p.scheme, host: p.host, path: p.path})
	}
	if len(l.prefixes) == 0 {
		return nil, errors.New("no allowed API URL: give at least one prefix")
	}
	return l, nil
}

// SplitAPIURLs splits a comma-separated --allowed-api-urls value. An empty
// value gives an empty, non-nil list: only --default-api-url is allowed.
func SplitAPIURLs(list string) []string {
	out := []string{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Allowed reports whether credentials may be sent to the API at u.
func (l *APIURLAllowList) Allowed(u string) bool {
	c, err := parseAPIURL(u)
	if err != nil {
		return false
	}
	for _, p := range l.prefixes {
		if c.scheme == p.scheme && c.host == p.host && pathHasPrefix(c.path, p.path) {
			return true
		}
	}
	return false
}

// String lists the prefixes, for messages.
func (l *APIURLAllowList) String() string {
	raw := make([]string, len(l.prefixes))
	for i, p := range l.prefixes {
		raw[i] = p.raw
	}
	return strings.Join(raw, ",")
}

type parsedURL struct {
	scheme, host, path, rawQuery string
	fragment                     bool
}

// parseAPIURL parses an absolute http(s) URL into the parts prefixes compare:
// lower-case scheme and host, the port made explicit, and the decoded path.
// User info and dot segments (which a server or proxy may resolve to
// another path) are refused.
func parseAPIURL(raw string) (parsedURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return parsedURL{}, fmt.Errorf("not a URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return parsedURL{}, errors.New("the scheme must be http or https")
	}
	if u.User != nil {
		return parsedURL{}, errors.New("user info is not allowed")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return parsedURL{}, errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return parsedURL{}, errors.New("dot segments are not allowed in the path")
		}
	}
	return parsedURL{scheme: scheme, host: net.JoinHostPort(strings.ToLower(u.Hostname()), port), path: u.Path,
		rawQuery: u.RawQuery, fragment: u.Fragment != "" || strings.Contains(raw, "#")}, nil
}

// pathHasPrefix matches whole path segments: "/client/v4" is a prefix of
// "/client/v4" and "/client/v4/accounts", not of "/client/v40".
func pathHasPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
