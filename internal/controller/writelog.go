package controller

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// loggedWrites logs, at info, every change the operator makes in Cloudflare:
// an operator on call can tell from the logs alone which object created,
// rotated, refreshed, renamed or deleted which token, and when. Every client
// a controller gets passes through it (Accounts.wrap), so no write path can
// forget. The reconcile's logger names the object (namespace and name); the
// lines carry the token ID and never a secret. A failed write is not logged
// here: the error goes back to the reconcile, which logs it once.
type loggedWrites struct{ cf.Client }

func (c loggedWrites) Create(ctx context.Context, scope cf.Scope, spec cf.TokenSpec) (cf.Credentials, error) {
	creds, err := c.Client.Create(ctx, scope, spec)
	if err == nil {
		logWrite(ctx, "create", scope, creds.ID, "tokenName", spec.Name, "duration", spec.Duration, "enabled", spec.Enabled)
	}
	return creds, err
}

func (c loggedWrites) Update(ctx context.Context, scope cf.Scope, id string, spec cf.TokenSpec) (cf.Token, error) {
	t, err := c.Client.Update(ctx, scope, id, spec)
	if err == nil {
		logWrite(ctx, "update", scope, id, "tokenName", spec.Name, "duration", spec.Duration, "enabled", spec.Enabled)
	}
	return t, err
}

func (c loggedWrites) Delete(ctx context.Context, scope cf.Scope, id string) error {
	err := c.Client.Delete(ctx, scope, id)
	if err == nil {
		logWrite(ctx, "delete", scope, id)
	}
	return err
}

func (c loggedWrites) Refresh(ctx context.Context, accountID, id string) (cf.Token, error) {
	t, err := c.Client.Refresh(ctx, accountID, id)
	if err == nil {
		logWrite(ctx, "refresh", cf.Scope{AccountID: accountID}, id, "expiresAt", t.ExpiresAt)
	}
	return t, err
}

func (c loggedWrites) Rotate(ctx context.Context, accountID, id string, previousExpiresAt time.Time) (cf.Credentials, error) {
	creds, err := c.Client.Rotate(ctx, accountID, id, previousExpiresAt)
	if err == nil {
		logWrite(ctx, "rotate", cf.Scope{AccountID: accountID}, id, "previousSecretExpiresAt", previousExpiresAt)
	}
	return creds, err
}

func logWrite(ctx context.Context, op string, scope cf.Scope, tokenID string, kv ...any) {
	kv = append([]any{"operation", op, "tokenID", tokenID, "accountID", scope.AccountID}, kv...)
	if scope.ZoneID != "" {
		kv = append(kv, "zoneID", scope.ZoneID)
	}
	ctrl.LoggerFrom(ctx).Info("changed a Cloudflare token", kv...)
}
