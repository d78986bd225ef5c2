package sim

import (
	"fmt"
	"net/http"
	"strings"
)

// APIPrefix is the base path of the simulated API, as at
// https://api.cloudflare.com/client/v4.
const APIPrefix = "/client/v4"

// route is a parsed /client/v4 request path.
type route struct {
	op      string // one of the Op constants; OpUnknown when err is set
	zone    bool
	scopeID string // account or zone ID
	tokenID string
	path    string    // below APIPrefix, e.g. /accounts/a/access/service_tokens
	err     *response // no route, or method not allowed
}

func (rt route) scope() scopeKey { return scopeKey{zone: rt.zone, id: rt.scopeID} }

// parseRoute maps a method and path onto one of the 12 endpoints:
//
//	/client/v4/{accounts|zones}/{id}/access/service_tokens
//	/client/v4/{accounts|zones}/{id}/access/service_tokens/{token_id}
//	/client/v4/accounts/{id}/access/service_tokens/{token_id}/{refresh|rotate}
//
// Anything else is Cloudflare's 404 "no route" (7000), or 405 (7001) for a
// known path with the wrong method.
func parseRoute(method, path string) route {
	noRoute := func() route {
		r := fail(http.StatusNotFound, CodeNoRoute, "No route for that URI")
		return route{op: OpUnknown, err: &r}
	}
	notAllowed := func() route {
		r := fail(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Method not allowed for this endpoint")
		r.header.Set("Allow", allowed(path))
		return route{op: OpUnknown, err: &r}
	}
	rest, found := strings.CutPrefix(path, APIPrefix+"/")
	if !found {
		return noRoute()
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 4 || len(segs) > 6 || (segs[0] != "accounts" && segs[0] != "zones") ||
		segs[2] != "access" || segs[3] != "service_tokens" {
		return noRoute()
	}
	for _, s := range segs {
		if s == "" {
			return noRoute()
		}
	}
	rt := route{zone: segs[0] == "zones", scopeID: segs[1], path: "/" + rest}
	switch len(segs) {
	case 4:
		switch method {
		case http.MethodGet:
			rt.op = OpList
		case http.MethodPost:
			rt.op = OpCreate
		default:
			return notAllowed()
		}
	case 5:
		rt.tokenID = segs[4]
		switch method {
		case http.MethodGet:
			rt.op = OpGet
		case http.MethodPut:
			rt.op = OpUpdate
		case http.MethodDelete:
			rt.op = OpDelete
		default:
			return notAllowed()
		}
	case 6:
		// Cloudflare offers refresh and rotate only for account tokens.
		if rt.zone || (segs[5] != "refresh" && segs[5] != "rotate") {
			return noRoute()
		}
		if method != http.MethodPost {
			return notAllowed()
		}
		rt.tokenID = segs[4]
		rt.op = segs[5] // OpRefresh or OpRotate
	}
	return rt
}

// allowed lists the methods of a known path, for the Allow header of a 405.
func allowed(path string) string {
	switch strings.Count(strings.TrimPrefix(path, APIPrefix+"/"), "/") {
	case 3:
		return "GET, POST"
	case 4:
		return "GET, PUT, DELETE"
	}
	return "POST"
}

// isWrite reports whether an operation needs write permission.
func isWrite(op string) bool {
	return op != OpList && op != OpGet && op != OpUnknown
}

// unknownScope is Cloudflare's answer for an account or zone it cannot route
// to; like Cloudflare it names the requested path below /client/v4.
func unknownScope(rt route) response {
	return fail(http.StatusNotFound, CodeUnknownScope,
		fmt.Sprintf("Could not route to %s, perhaps your object identifier is invalid?", rt.path))
}
