package controller

import (
	"context"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// waitForCache waits (briefly) until the informer cache has caught up with a
// write of ours, so that the next reconcile of this object does not decide a
// Cloudflare call on facts we have already changed. Resource versions are
// etcd revisions: comparing them numerically is what cluster-api does too;
// when one does not parse, we do not wait.
func waitForCache(ctx context.Context, c client.Reader, obj client.Object) {
	want, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	probe := obj.DeepCopyObject().(client.Object)
	_ = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), probe); err != nil {
			return false, nil
		}
		have, err := strconv.ParseUint(probe.GetResourceVersion(), 10, 64)
		return err != nil || have >= want, nil
	})
}
