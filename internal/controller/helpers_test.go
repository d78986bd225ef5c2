package controller

import (
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

// eventLog is an events.EventRecorder that keeps what the controller said.
type eventLog struct {
	mu     sync.Mutex
	events []recordedEvent
}

type recordedEvent struct {
	Object, Type, Reason, Note string
}

func (l *eventLog) Eventf(regarding runtime.Object, _ runtime.Object, eventType, reason, _ string, note string, args ...any) {
	o := regarding.(client.Object)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, recordedEvent{Object: o.GetNamespace() + "/" + o.GetName(), Type: eventType, Reason: reason, Note: fmt.Sprintf(note, args...)})
}

// reasons lists the event reasons recorded for an object, in order.
func (l *eventLog) reasons(st *v1alpha1.ServiceToken) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Object == st.Namespace+"/"+st.Name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// notes lists the notes of the object's events with that type and reason.
func (l *eventLog) notes(st *v1alpha1.ServiceToken, eventType, reason string) []string {
	var out []string
	for _, e := range l.all() {
		if e.Object == st.Namespace+"/"+st.Name && e.Type == eventType && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

func (l *eventLog) all() []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recordedEvent(nil), l.events...)
}

const (
	timeout  = 20 * time.Second
	interval = 50 * time.Millisecond
)

func serviceToken(ns, name string, mutate ...func(*v1alpha1.ServiceToken)) *v1alpha1.ServiceToken {
	st := &v1alpha1.ServiceToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "cf"}, Duration: "720h"},
	}
	for _, m := range mutate {
		m(st)
	}
	return st
}

func get(st *v1alpha1.ServiceToken) *v1alpha1.ServiceToken {
	out := &v1alpha1.ServiceToken{}
	ExpectWithOffset(1, k8s.Get(ctx(), client.ObjectKeyFromObject(st), out)).To(Succeed())
	return out
}

func condition(st *v1alpha1.ServiceToken, t string) *metav1.Condition {
	return meta.FindStatusCondition(st.Status.Conditions, t)
}

// waitFor waits until the ServiceToken satisfies check and returns it.
func waitFor(st *v1alpha1.ServiceToken, desc string, check func(*v1alpha1.ServiceToken) bool) *v1alpha1.ServiceToken {
	var last *v1alpha1.ServiceToken
	EventuallyWithOffset(1, func() bool {
		last = &v1alpha1.ServiceToken{}
		if err := k8s.Get(ctx(), client.ObjectKeyFromObject(st), last); err != nil {
			return false
		}
		return check(last)
	}, timeout, interval).Should(BeTrue(), func() string { return fmt.Sprintf("%s; status: %+v", desc, last.Status) })
	return last
}

func isReady(st *v1alpha1.ServiceToken) bool {
	c := condition(st, v1alpha1.ConditionReady)
	r := condition(st, v1alpha1.ConditionReconciling)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == st.Generation &&
		(r == nil || r.Status == metav1.ConditionFalse) && st.Status.PendingOperation == nil
}

func waitReady(st *v1alpha1.ServiceToken) *v1alpha1.ServiceToken {
	return waitFor(st, "Ready", isReady)
}

func hasReason(t, reason string) func(*v1alpha1.ServiceToken) bool {
	return func(st *v1alpha1.ServiceToken) bool {
		c := condition(st, t)
		return c != nil && c.Reason == reason
	}
}

func secretOf(st *v1alpha1.ServiceToken) *corev1.Secret {
	eff, err := st.Effective()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	s := &corev1.Secret{}
	ExpectWithOffset(1, k8s.Get(ctx(), types.NamespacedName{Namespace: st.Namespace, Name: eff.SecretName}, s)).To(Succeed())
	return s
}

// credential is a client ID and secret as a workload would read them.
type credential struct{ id, secret string }

func credentialOf(st *v1alpha1.ServiceToken) credential {
	eff, err := st.Effective()
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	s := secretOf(st)
	return credential{string(s.Data[eff.ClientIDKey]), string(s.Data[eff.ClientSecretKey])}
}

// works asks the simulator whether Access would let the credential in now.
func (c credential) works() bool { return simulator.Verify(c.id, c.secret) }

// simTokens returns the simulator's tokens with that name.
func simTokens(name string) []sim.TokenState {
	var out []sim.TokenState
	for _, t := range simulator.Tokens() {
		if t.Name == name {
			out = append(out, t)
		}
	}
	return out
}

// tokenIDs returns the IDs of the simulator's tokens with that name (IDs,
// not the tokens, so a failing assertion never prints a secret).
func tokenIDs(name string) []string {
	var ids []string
	for _, t := range simTokens(name) {
		ids = append(ids, t.ID)
	}
	return ids
}

func simToken(id string) (sim.TokenState, bool) { return simulator.Token(id) }

// tokenName is st's default token name, "<namespace>/<name>#<uid>", as an
// operator without --cluster-name gives it.
func tokenName(st *v1alpha1.ServiceToken) string {
	uid := st.UID
	if uid == "" {
		uid = get(st).UID
	}
	return v1alpha1.DefaultTokenName(st.Namespace, st.Name, "", uid)
}

// poke makes the controller look at the object now, as a time-based requeue
// would have when the fake clock jumps.
var pokeSeq int

func poke(st *v1alpha1.ServiceToken) {
	pokeSeq++
	annotate(st, "test.servicetoken.dev/poke", fmt.Sprint(pokeSeq))
}

func annotate(st *v1alpha1.ServiceToken, key, value string) {
	EventuallyWithOffset(1, func() error {
		cur := get(st)
		patch := client.MergeFrom(cur.DeepCopy())
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[key] = value
		return k8s.Patch(ctx(), cur, patch)
	}, timeout, interval).Should(Succeed())
}

func update(st *v1alpha1.ServiceToken, mutate func(*v1alpha1.ServiceToken)) {
	EventuallyWithOffset(1, func() error {
		cur := get(st)
		mutate(cur)
		return k8s.Update(ctx(), cur)
	}, timeout, interval).Should(Succeed())
}

// kstatus computes the status Flux and Argo CD would see.
func kstatus(st *v1alpha1.ServiceToken) status.Status {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(st)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("ServiceToken")
	res, err := status.Compute(u)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return res.Status
}

// expectNoSecretLeaks checks that no secret the simulator ever issued appears
// in any event, or in the object's status.
func expectNoSecretLeaks(op *operator, sts ...*v1alpha1.ServiceToken) {
	var texts []string
	for _, e := range op.events.all() {
		texts = append(texts, e.Note)
	}
	for _, st := range sts {
		texts = append(texts, fmt.Sprintf("%+v", get(st).Status))
	}
	joined := strings.Join(texts, "\n")
	for _, s := range simulator.IssuedSecrets() {
		ExpectWithOffset(1, joined).NotTo(ContainSubstring(s))
	}
}

func containsText(s, sub string) bool { return strings.Contains(s, sub) }

// waitAccountReason waits until the CloudflareAccount's Ready condition has
// reason, and returns that condition.
func waitAccountReason(ns, name, reason string) *metav1.Condition {
	GinkgoHelper()
	acc := &v1alpha1.CloudflareAccount{}
	Eventually(func() string {
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, acc)).To(Succeed())
		if c := findCondition(acc.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			return c.Reason
		}
		return ""
	}, timeout, interval).Should(Equal(reason))
	return findCondition(acc.Status.Conditions, v1alpha1.ConditionReady)
}
