package controller

import (
	"encoding/json"
	"sync"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// logLines collects a manager's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// writes returns, by operation, the token IDs of the info lines that say
// the operator changed a Cloudflare token on behalf of namespace/name.
func (l *logLines) writes(namespace, name string) map[string][]string {
	out := map[string][]string{}
	for _, line := range l.all() {
		var m map[string]any
		Expect(json.Unmarshal([]byte(line), &m)).To(Succeed(), line)
		if m["msg"] != "changed a Cloudflare token" || m["namespace"] != namespace || m["name"] != name {
			continue
		}
		Expect(m).To(HaveKeyWithValue("level", BeNumerically("==", 0)), "at info: %s", line)
		op, _ := m["operation"].(string)
		id, _ := m["tokenID"].(string)
		out[op] = append(out[op], id)
	}
	return out
}

var _ = Describe("The operator's logs", func() {
	It("say at info which ServiceToken created, rotated and deleted which token, and never a secret", func() {
		lines := &logLines{}
		ns := newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		op := startOperatorLogging(ns, funcr.NewJSON(lines.add, funcr.Options{}), Options{})
		DeferCleanup(func() { op.stop() })

		st := serviceToken(ns, "app", func(st *v1alpha1.ServiceToken) {
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "1h"} // rotate in place, keeping the token ID
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id, first := st.Status.TokenID, credentialOf(st)
		Eventually(func() map[string][]string { return lines.writes(ns, "app") }, timeout, interval).
			Should(HaveKeyWithValue("create", ConsistOf(id)))

		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "logged")
		st = waitFor(st, "rotation handled", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "logged"
		})
		second := credentialOf(st)
		Expect(second.secret).NotTo(Equal(first.secret))
		Eventually(func() map[string][]string { return lines.writes(ns, "app") }, timeout, interval).
			Should(HaveKeyWithValue("rotate", ConsistOf(id)))

		Expect(k8s.Delete(ctx(), st)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), st)) }, timeout, interval).Should(BeTrue())
		Eventually(func() map[string][]string { return lines.writes(ns, "app") }, timeout, interval).
			Should(HaveKeyWithValue("delete", ConsistOf(id)))

		for _, line := range lines.all() {
			for _, secret := range []string{first.secret, second.secret, testAPIToken} {
				Expect(line).NotTo(ContainSubstring(secret), "a log line holds a secret")
			}
		}
	})
})
