// Package sim is an in-memory HTTP server that behaves like Cloudflare's
// Access service-token API (the 12 endpoints under /client/v4 described in
// /work/shared/cloudflare/service-tokens.openapi.json and API-NOTES.md).
// Every test, demo and benchmark of the operator uses it as the yardstick, so
// it follows the published contract exactly and makes every behaviour that
// Cloudflare leaves open an explicit, documented choice.
//
// A *Server is an http.Handler serving two trees:
//
//   - /client/v4/...: the Cloudflare API (auth, rate limit, faults, envelope).
//   - /_sim/...: unauthenticated control endpoints for tests and demos:
//     GET /_sim/tokens (every token including secrets: the test oracle),
//     GET /_sim/verify (CF-Access-Client-Id / CF-Access-Client-Secret headers;
//     200 if Access would let them in, else 403), GET /_sim/stats,
//     GET and PUT /_sim/faults, DELETE /_sim/tokens/{id} (out-of-band delete),
//     POST /_sim/reset-stats, GET /_sim/requests, GET /_sim/issued-secrets.
//
// The Go API offers the same oracle: Tokens, Verify, Stats, RequestLog,
// IssuedSecrets, SetFaults, DeleteTokenOutOfBand, UpdateTokenOutOfBand and
// ResetStats.
//
// # Facts implemented as published
//
//   - Envelope {success, errors, messages, result}; failures carry
//     success:false, result:null and at least one error.
//   - create answers 201, every other success 200; client_secret appears only
//     in create and rotate responses.
//   - duration is a Go duration or "forever", default "8760h"; enabled
//     defaults to true; a disabled token keeps its identity but neither secret
//     authenticates.
//   - rotate issues a new secret; the previous one stays valid until
//     previous_client_secret_expires_at (default: now, i.e. revoked at once),
//     which PUT can change later. Incrementing client_secret_version with PUT
//     rotates too.
//   - PUT with a duration resets expires_at relative to the time of the PUT.
//   - Account list: name (exact), search, page (default 1), per_page (default
//     1000, max 1000), result_info. Zone list: no query parameters.
//   - 401 (missing or bad credentials) and 403 (read-only API token writing)
//     both carry {"code":10000,"message":"Authentication error"}.
//   - Over the per-credential budget (default 1200 per 5 minutes, fixed
//     window) every call gets 429 with Retry-After for the rest of the window.
//
// # Choices where Cloudflare's behaviour is unknown
//
//   - expires_at of a "forever" token: the field is omitted (the schema's
//     timestamp is not nullable, so null would break the contract); the
//     operator's Token.ExpiresAt is then zero. last_seen_at is likewise omitted
//     until the token has been used (see /_sim/verify).
//   - refresh: by default the new expiry is counted from the old expiry
//     (old expires_at + duration), or from now if the token has already
//     expired. Options.RefreshFromNow switches to now + duration. Refreshing a
//     "forever" token changes only updated_at.
//   - PUT carrying a duration resets expires_at to now + duration even when
//     the duration is unchanged (the docs' literal reading).
//     Options.ResetExpiryOnlyOnDurationChange resets it only when the value
//     differs from the stored one.
//   - PUT that increments client_secret_version rotates the secret but the
//     response does not carry the new client_secret (so that secret is lost
//     to the caller; prefer the rotate endpoint). Options.SecretInUpdateResponse
//     includes it. A version equal to or lower than the current one is stored
//     as is and does not rotate.
//   - rotate does not change expires_at and increments client_secret_version.
//     Only one previous secret is kept: a second rotate during a grace period
//     drops the older previous secret.
//   - Names need not be unique; the name filter returns every exact
//     (case-sensitive) match. search is a case-insensitive substring match on
//     name or client_id.
//   - List order is creation order (oldest first), stable across pages.
//     total_pages is ceil(total_count/per_page), so 0 for an empty list;
//     count is the number of results on the page. A page past the end is an
//     empty result with success:true.
//   - per_page outside 1..1000, page < 1 or non-integer values are a 400
//     rather than being clamped (the schema caps per_page at 1000).
//   - The zone list ignores query parameters and returns every token of the
//     zone on one page (result_info page 1, per_page = count).
//   - duration must be positive; there is no maximum besides what Go's
//     time.ParseDuration accepts. name must be non-empty; no maximum length
//     (the body is capped at 1 MiB).
//   - Error codes other than 10000 are not published. The simulator uses
//     Cloudflare's generic routing codes 7000 (no route), 7001 (method not
//     allowed) and 7003 (unknown account or zone, 404), and invented codes
//     10400 (invalid request, 400), 10404 (token not found, 404) and 10429
//     (rate limited; Cloudflare's reported code 971 is below the schema's
//     minimum of 1000). Clients must key on the HTTP status.
//   - A token ID that is not a UUID, or a token of another account or zone,
//     is a 404 like an unknown one.
//   - Zone endpoints accept API tokens as well as the legacy email+key (the
//     schema lists only email+key for zones).
//   - With no APITokens and no APIKeys configured, any non-empty credential
//     is accepted with write permission; missing credentials are still a 401.
//   - Authentication comes before the rate limit, which comes before routing,
//     the unknown-account check, the read-only check and body validation;
//     unauthenticated requests do not spend a budget. The 200/s per-IP limit
//     is not simulated. Every response to an authenticated request carries
//     the Ratelimit and Ratelimit-Policy headers.
//   - /_sim/verify stamps last_seen_at on success (it stands for a request
//     through Access); Verify itself has no side effects.
//
// # Faults
//
// Options.Faults (and SetFaults, PUT /_sim/faults) inject failures into
// /client/v4 requests with probability Faults.Rate, choosing uniformly among
// the kinds in Faults.Kinds that apply to the operation (drop-response applies
// only to create, rotate and delete; a request for which no listed kind
// applies gets no fault). Faults.Ops, when set, restricts faults to those
// operations (say, refresh only). See faults.go for what each kind does on
// the wire.
//
// IDs and secrets come from a PRNG seeded with Options.Seed (0 = a random
// seed), so a non-zero seed makes runs reproducible.
package sim
