package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const testUID = types.UID("uid-1")

func testPair(secret string, seen time.Time) *held {
	return &held{pairKey: pairKey{clientID: "cid.access", secret: secret}, ns: "ns", name: "st", uid: testUID,
		tokenID: "tok-1", firstSeen: seen}
}

func testViews(p *held, grace time.Duration) map[types.UID]*stView {
	return map[types.UID]*stView{testUID: {ns: "ns", name: "st", uid: testUID, grace: grace, enabled: true, current: p}}
}

func TestAReplacedSecretMustVerifyUntilItsGraceEnds(t *testing.T) {
	tr := newTracker()
	g := 45 * time.Second
	tr.observe(t0, testViews(testPair("s1", t0), g))
	tr.observe(t0.Add(time.Second), testViews(testPair("s1", t0.Add(time.Second)), g)) // unchanged
	tr.observe(t0.Add(2*time.Second), testViews(nil, g))                               // Secret deleted: s1 is still what was handed out
	tr.observe(t0.Add(3*time.Second), testViews(testPair("s2", t0.Add(3*time.Second)), g))

	if tr.sampled != 2 || tr.successors != 1 || len(tr.retiring) != 1 {
		t.Fatalf("sampled %d, successors %d, retiring %d; want 2, 1, 1", tr.sampled, tr.successors, len(tr.retiring))
	}
	p := tr.retiring[0]
	// The successor was written after the snapshot at t0+2s, which did not show it.
	if want := t0.Add(2*time.Second + g - clockSkew); !p.deadline.Equal(want) || p.secret != "s1" {
		t.Fatalf("deadline %s, want %s", p.deadline, want)
	}
	if n := len(tr.due(t0.Add(10 * time.Second))); n != 1 {
		t.Fatalf("due inside the grace: %d, want 1", n)
	}

	// A stale copy of s1 showing up again is not a new secret.
	tr.observe(t0.Add(4*time.Second), testViews(testPair("s1", t0.Add(4*time.Second)), g))
	if tr.sampled != 2 || tr.current[testUID].secret != "s2" {
		t.Fatalf("a replaced pair came back as current (sampled %d)", tr.sampled)
	}
	if n := len(tr.due(p.deadline)); n != 0 {
		t.Fatalf("due at the deadline: %d, want 0", n)
	}
}

func TestGraceZeroIsExcusedAndNotASuccessorEvent(t *testing.T) {
	tr := newTracker()
	tr.observe(t0, testViews(testPair("s1", t0), 0))
	tr.observe(t0.Add(time.Second), testViews(testPair("s2", t0.Add(time.Second)), 0))
	if tr.successors != 0 || len(tr.retiring) != 0 || tr.excused[excuseGraceZero] != 1 {
		t.Fatalf("successors %d, retiring %d, excused %v", tr.successors, len(tr.retiring), tr.excused)
	}
}

func TestAGoneServiceTokenIsForgotten(t *testing.T) {
	tr := newTracker()
	tr.observe(t0, testViews(testPair("s1", t0), time.Minute))
	tr.observe(t0.Add(time.Second), map[types.UID]*stView{})
	if len(tr.current) != 0 {
		t.Fatal("a deleted ServiceToken's pair is still current")
	}
}

func TestClassifyExplainsAFailedVerify(t *testing.T) {
	p := &retiring{held: testPair("SECRET-HELD", t0), grace: time.Minute, deadline: t0.Add(time.Minute)}
	now := t0.Add(10 * time.Second)
	live := &stView{enabled: true}
	token := func(mut func(*harness.SimToken)) *harness.SimToken {
		tok := &harness.SimToken{ID: "tok-1", ClientID: "cid.access", Enabled: true, ExpiresAt: t0.Add(time.Hour),
			ClientSecret: "SECRET-NEW", PreviousClientSecret: "SECRET-HELD", PreviousClientSecretExpiresAt: t0.Add(5 * time.Second)}
		if mut != nil {
			mut(tok)
		}
		return tok
	}
	for _, c := range []struct {
		name          string
		v             *stView
		tok           *harness.SimToken
		churnDeleted  bool
		excuse, cause string
		final         bool
	}{
		{name: "servicetoken gone", v: nil, tok: token(nil), excuse: excuseDeleted, final: true},
		{name: "servicetoken deleting", v: &stView{enabled: true, deleting: true}, tok: token(nil), excuse: excuseDeleted, final: true},
		{name: "token deleted by the churn", v: live, churnDeleted: true, excuse: excuseChurnDeleted, final: true},
		{name: "spec disabled", v: &stView{enabled: false}, tok: token(nil), excuse: excuseDisabled},
		{name: "token disabled in cloudflare", v: live, tok: token(func(t *harness.SimToken) { t.Enabled = false }), excuse: excuseDisabled},
		{name: "token gone", v: live, tok: nil, cause: "no longer exists"},
		{name: "token expired", v: live, tok: token(func(t *harness.SimToken) { t.ExpiresAt = t0 }), cause: "expired at"},
		{name: "previous secret cut short", v: live, tok: token(nil), cause: "previous secret only until"},
		{name: "displaced", v: live, tok: token(func(t *harness.SimToken) { t.PreviousClientSecret = "SECRET-OTHER" }), cause: "displaced"},
		{name: "verifies after all", v: live, tok: token(func(t *harness.SimToken) { t.ClientSecret = "SECRET-HELD" })},
	} {
		t.Run(c.name, func(t *testing.T) {
			excuse, final, cause := classify(p, c.v, c.tok, c.churnDeleted, now)
			if excuse != c.excuse || final != c.final || (c.cause == "") != (cause == "") || !strings.Contains(cause, c.cause) {
				t.Fatalf("got (%q, %v, %q), want (%q, %v, ~%q)", excuse, final, cause, c.excuse, c.final, c.cause)
			}
			if strings.Contains(cause, "SECRET") {
				t.Fatalf("the cause names a secret: %q", cause)
			}
		})
	}
}

func TestJudgeCountsExcusesOnceAndRecordsCandidates(t *testing.T) {
	tr := newTracker()
	g := time.Minute
	tr.observe(t0, testViews(testPair("s1", t0), g))
	disabled := testViews(testPair("s2", t0.Add(time.Second)), g)
	disabled[testUID].enabled = false
	tr.observe(t0.Add(time.Second), disabled)
	p := tr.due(t0.Add(2 * time.Second))[0]
	tr.judge(p, t0.Add(2*time.Second), nil)
	tr.judge(p, t0.Add(3*time.Second), nil)
	if tr.excused[excuseDisabled] != 1 || p.done {
		t.Fatalf("excused %v, done %v: want one disabled excuse and sampling to go on", tr.excused, p.done)
	}

	tr.observe(t0.Add(4*time.Second), testViews(testPair("s2", t0.Add(time.Second)), g)) // re-enabled
	tr.judge(p, t0.Add(5*time.Second), nil)
	if len(tr.candidates) != 1 || !p.done || tr.candidates[0].tokenID != "tok-1" {
		t.Fatalf("candidates %d, done %v", len(tr.candidates), p.done)
	}
	if n := len(tr.due(t0.Add(6 * time.Second))); n != 0 {
		t.Fatalf("a judged pair is still sampled (%d due)", n)
	}

	tr.noteChurnDeletion("tok-9", "cid.access")
	q := &retiring{held: testPair("s0", t0), grace: g, deadline: t0.Add(g)}
	tr.judge(q, t0.Add(7*time.Second), nil)
	if tr.excused[excuseChurnDeleted] != 1 || !q.done || len(tr.candidates) != 1 {
		t.Fatalf("a token the churn deleted was not excused: %v", tr.excused)
	}
}

// The operator deletes a deleted ServiceToken's token within milliseconds,
// often after the snapshot that still shows the ServiceToken live: what the
// churn noted before deleting it excuses the failure, not the snapshot.
func TestADeletionTheSnapshotDidNotShowYetIsExcused(t *testing.T) {
	for _, noted := range []bool{false, true} {
		tr := newTracker()
		g := time.Minute
		tr.observe(t0, testViews(testPair("s1", t0), g))
		tr.observe(t0.Add(time.Second), testViews(testPair("s2", t0.Add(time.Second)), g))
		if noted {
			tr.noteServiceTokenDeletion(testUID, true)
		}
		p := tr.due(t0.Add(2 * time.Second))[0]
		tr.judge(p, t0.Add(2*time.Second), nil) // the token is gone; the last snapshot shows the ServiceToken live
		excused := tr.excused[excuseDeleted] == 1 && len(tr.candidates) == 0 && p.done
		if excused != noted || tr.deletedAhead != len(tr.stDeleted) {
			t.Fatalf("deletion noted %v: excused %v (excuses %v, %d candidates, %d counted as ahead of the snapshot)",
				noted, excused, tr.excused, len(tr.candidates), tr.deletedAhead)
		}
	}
}

func TestLostRotatesAreToldApartFromViolations(t *testing.T) {
	c := &candidate{retiring: &retiring{held: testPair("s1", t0)}, failedAt: t0.Add(time.Minute), tokenID: "tok-1"}
	rotate := func(id string, at time.Time) []sim.Request {
		return []sim.Request{{Time: at, Op: sim.OpRotate, Fault: sim.FaultDropResponse,
			Path: "/client/v4/accounts/acc/access/service_tokens/" + id + "/rotate"}}
	}
	for _, x := range []struct {
		name  string
		drops []sim.Request
		lost  []lostEvent
		want  bool
	}{
		{name: "nothing", want: false},
		{name: "dropped rotate of its token while current", drops: rotate("tok-1", t0.Add(10*time.Second)), want: true},
		{name: "just before it was first seen", drops: rotate("tok-1", t0.Add(-2*time.Second)), want: true},
		{name: "another token", drops: rotate("tok-2", t0.Add(10*time.Second)), want: false},
		{name: "long before", drops: rotate("tok-1", t0.Add(-time.Minute)), want: false},
		{name: "after the failure", drops: rotate("tok-1", t0.Add(2*time.Minute)), want: false},
		{name: "RotationLost event", lost: []lostEvent{{ns: "ns", name: "st", first: t0.Add(61 * time.Second), last: t0.Add(61 * time.Second)}}, want: true},
		{name: "event of another ServiceToken", lost: []lostEvent{{ns: "ns", name: "other", first: t0.Add(time.Minute), last: t0.Add(time.Minute)}}, want: false},
		{name: "event much later", lost: []lostEvent{{ns: "ns", name: "st", first: t0.Add(10 * time.Minute), last: t0.Add(10 * time.Minute)}}, want: false},
	} {
		if got := isLostRotate(c, x.drops, x.lost); got != x.want {
			t.Errorf("%s: isLostRotate = %v, want %v", x.name, got, x.want)
		}
	}
}

func TestAPairNeverFormatsItsSecret(t *testing.T) {
	p := &retiring{held: testPair("SECRET-HELD", t0)}
	for _, s := range []string{fmt.Sprint(p.pairKey), fmt.Sprintf("%v %+v %#v", p.held, p, *p.held)} {
		if strings.Contains(s, "SECRET") {
			t.Fatal("a formatted pair shows its secret")
		}
	}
}

func TestOnlyWhatTheOperatorWroteIsAHandedOutSecret(t *testing.T) {
	eff := v1alpha1.Effective{ClientIDKey: "id", ClientSecretKey: "secret"}
	sum := sha256.Sum256([]byte("value"))
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annotationSecretHash: hex.EncodeToString(sum[:]),
			v1alpha1.AnnotationTokenID: "tok-1", annotationOperationID: "op-1"}},
		Data: map[string][]byte{"id": []byte("cid.access"), "secret": []byte("value")},
	}
	p := handedOut(s, eff, t0)
	if p == nil || p.clientID != "cid.access" || p.secret != "value" || p.tokenID != "tok-1" || p.operationID != "op-1" {
		t.Fatalf("handedOut did not return the pair with its token and operation IDs (nil: %v)", p == nil)
	}
	s.Data["secret"] = []byte("edited-by-chaos")
	if handedOut(s, eff, t0) != nil {
		t.Fatal("a value edited by hand counts as handed out")
	}
}

func TestADisplacementAfterTheChurnLostTheSecretIsExcused(t *testing.T) {
	tr := newTracker()
	g := 45 * time.Second
	tr.observe(t0, testViews(testPair("s1", t0), g))
	tr.observe(t0.Add(time.Second), testViews(testPair("s2", t0.Add(time.Second)), g))
	p := tr.retiring[0]
	tok := &harness.SimToken{ID: "tok-1", ClientID: "cid.access", Enabled: true, ClientSecret: "s4", PreviousClientSecret: "s3"}

	tr.judge(p, t0.Add(5*time.Second), tok) // displaced with no Secret lost: a candidate
	if len(tr.candidates) != 1 || tr.candidates[0].cause != causeDisplaced {
		t.Fatalf("candidates %d: a displacement without a cause is a violation candidate", len(tr.candidates))
	}

	tr = newTracker()
	tr.observe(t0, testViews(testPair("s1", t0), g))
	tr.observe(t0.Add(time.Second), testViews(testPair("s2", t0.Add(time.Second)), g))
	p = tr.retiring[0]
	tr.noteSecretLost(testUID, t0.Add(3*time.Second)) // the churn deleted the Secret during s1's grace
	tr.judge(p, t0.Add(5*time.Second), tok)
	if len(tr.candidates) != 0 || tr.excused[excuseSecretLost] != 1 || !p.done {
		t.Fatalf("candidates %d, excused %v: the recovery rotation after a lost Secret is excused", len(tr.candidates), tr.excused)
	}
}

func TestASecretLostBeforeTheSeenSuccessorStillExplainsTheRecovery(t *testing.T) {
	tr := newTracker()
	g := 20 * time.Second
	tr.observe(t0, testViews(testPair("s0", t0), g))
	// A rotation stored s1 and the churn corrupted it before any snapshot
	// showed it; the recovery stored s2, the first successor seen.
	tr.noteSecretLost(testUID, t0.Add(2*time.Second))
	tr.observe(t0.Add(4*time.Second), testViews(testPair("s2", t0.Add(4*time.Second)), g))
	p := tr.retiring[0]
	tok := &harness.SimToken{ID: "tok-1", ClientID: "cid.access", Enabled: true, ClientSecret: "s2", PreviousClientSecret: "s1"}
	tr.judge(p, t0.Add(5*time.Second), tok)
	if len(tr.candidates) != 0 || tr.excused[excuseSecretLost] != 1 {
		t.Fatalf("candidates %d, excused %v", len(tr.candidates), tr.excused)
	}

	tr = newTracker()
	tr.noteSecretLost(testUID, t0.Add(-time.Second)) // before the pair was ever held: unrelated
	tr.observe(t0, testViews(testPair("s0", t0), g))
	tr.observe(t0.Add(4*time.Second), testViews(testPair("s2", t0.Add(4*time.Second)), g))
	tr.judge(tr.retiring[0], t0.Add(5*time.Second), tok)
	if len(tr.candidates) != 1 {
		t.Fatalf("a Secret lost before the pair was held excused its displacement")
	}
}

func TestAnOrphanedServiceTokensTokensAreKnownByTheirMarker(t *testing.T) {
	o := orphanSet{ids: map[string]bool{"id-1": true}, names: map[string]bool{"custom": true}, markers: map[string]bool{"#uid-1": true}}
	for _, c := range []struct {
		id, name string
		want     bool
	}{
		{"id-1", "anything", true},
		{"id-2", "custom", true},
		{"id-3", "custom#uid-1", true}, // an interrupted create under the marked name
		{"id-4", "chaos-a/x#uid-2", false},
		{"id-5", "no marker", false},
	} {
		if got := o.has(c.id, c.name); got != c.want {
			t.Errorf("has(%q, %q) = %v, want %v", c.id, c.name, got, c.want)
		}
	}
}
