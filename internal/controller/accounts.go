package controller

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// account is one resolved account object: what the controllers need of either kind.
type account struct {
	Key        string // "<Kind>/<namespace>/<name>", the factory and inventory key
	Kind       string
	Object     client.Object
	Settings   v1alpha1.AccountSettings
	SecretRef  types.NamespacedName
	Keys       v1alpha1.CredentialsKeys
	Conditions []metav1.Condition
	Selector   *metav1.LabelSelector // cluster kind only
	// WriteVerified is status.writeAccessVerified as read; CredentialsVersion
	// the version of the credentials Secret config last read ("uid/rv").
	WriteVerified      string
	CredentialsVersion string
}

func accountKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// causeError is a cause retrying cannot fix: terminal (Stalled until a person
// changes the object, its account or its Secret) or waiting (for an account
// to appear or become Ready; its watch wakes the ServiceToken).
type causeError struct {
	Reason   string
	Message  string
	Terminal bool // waits for a change to the account or its Secret, not a retry
}

func (e *causeError) Error() string { return e.Message }

// Accounts resolves account objects and builds their Cloudflare clients.
type Accounts struct {
	Client        client.Client // cached reads of account objects and namespaces
	APIReader     client.Reader // credentials are read from the API server, never cached (only their metadata is: credentialsCache)
	Factory       cf.Factory
	DefaultAPIURL string
	// AllowedURLs bounds where credentials may be sent (--allowed-api-urls).
	// Nil: Cloudflare's API and DefaultAPIURL only.
	AllowedURLs *APIURLAllowList
	// Wrap, when set, wraps every client the factory hands out (tests inject
	// faults after real calls this way, keeping the factory's limiters).
	Wrap func(cf.Client) cf.Client

	mu     sync.Mutex
	reread map[string]bool // account key -> its client was rejected: read the credentials again

	guard sync.Mutex // serializes guardCredentials: accounts of both kinds may share a Secret
}

// RereadCredentials makes the next ServiceToken of the account read its
// credentials Secret again instead of reusing the account's client: call it
// when Cloudflare rejected that client's credentials (they may have been
// fixed in the Secret since).
func (a *Accounts) RereadCredentials(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reread == nil {
		a.reread = map[string]bool{}
	}
	a.reread[key] = true
}

// cachedClient is the account's current client, unless it must be rebuilt.
func (a *Accounts) cachedClient(key string) (cf.Client, bool) {
	a.mu.Lock()
	reread := a.reread[key]
	a.mu.Unlock()
	if reread {
		return nil, false
	}
	return a.wrap(a.Factory.Cached(key))
}

// wrap gives a client to a controller: with the test's Wrap, and every
// write logged (outside Wrap, so a fault it injects is not logged as done).
func (a *Accounts) wrap(c cf.Client, ok bool) (cf.Client, bool) {
	if !ok {
		return c, false
	}
	if a.Wrap != nil {
		c = a.Wrap(c)
	}
	return loggedWrites{c}, true
}

func (a *Accounts) rereadDone(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reread, key)
}

// get fetches the account a ServiceToken refers to.
func (a *Accounts) get(ctx context.Context, kind, namespace, name string) (*account, error) {
	if kind == v1alpha1.KindClusterCloudflareAcc {
		obj := &v1alpha1.ClusterCloudflareAccount{}
		if err := a.Client.Get(ctx, types.NamespacedName{Name: name}, obj); err != nil {
			return nil, err
		}
		ref := obj.Spec.CredentialsRef
		return &account{Key: accountKey(kind, "", name), Kind: kind, Object: obj, Settings: obj.Spec.AccountSettings,
			SecretRef: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, Keys: ref.CredentialsKeys,
			Conditions: obj.Status.Conditions, Selector: obj.Spec.NamespaceSelector, WriteVerified: obj.Status.WriteAccessVerified}, nil
	}
	obj := &v1alpha1.CloudflareAccount{}
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj); err != nil {
		return nil, err
	}
	ref := obj.Spec.CredentialsRef
	return &account{Key: accountKey(v1alpha1.KindCloudflareAccount, namespace, name), Kind: v1alpha1.KindCloudflareAccount,
		Object: obj, Settings: obj.Spec.AccountSettings,
		// The namespaced kind always reads its own namespace: a ServiceToken can
		// never reach a Secret in another namespace through it.
		SecretRef: types.NamespacedName{Namespace: namespace, Name: ref.Name}, Keys: ref.CredentialsKeys,
		Conditions: obj.Status.Conditions, WriteVerified: obj.Status.WriteAccessVerified}, nil
}

// config reads the credentials Secret and builds the account's client config.
// Nothing is read or sent for an API URL outside the allow-list, and a
// Secret that does not opt in (LabelCredentials) is not used.
func (a *Accounts) config(ctx context.Context, acc *account) (cf.AccountConfig, error) {
	baseURL := acc.Settings.EffectiveAPIURL(a.DefaultAPIURL)
	if err := a.checkAPIURL(acc, baseURL); err != nil {
		return cf.AccountConfig{}, err
	}
	secret := &corev1.Secret{}
	if err := a.APIReader.Get(ctx, acc.SecretRef, secret); err != nil {
		if apierrors.IsNotFound(err) {
			// Not terminal: a Secret made later in the same sync, or by a
			// secrets operator, is picked up at once (the Secret is watched).
			return cf.AccountConfig{}, &causeError{Reason: v1alpha1.ReasonCredentialsMissing,
				Message: fmt.Sprintf("credentials Secret %s not found; waiting for it", acc.SecretRef)}
		}
		return cf.AccountConfig{}, fmt.Errorf("reading credentials Secret %s: %w", acc.SecretRef, err)
	}
	if secret.Labels[v1alpha1.LabelCredentials] != "true" {
		return cf.AccountConfig{}, &causeError{Reason: v1alpha1.ReasonCredentialsNotOptedIn, Terminal: true,
			Message: fmt.Sprintf("credentials Secret %s is not labelled %s=true; add the label to allow its use as Cloudflare credentials (kubectl label secret -n %s %s %s=true)",
				acc.SecretRef, v1alpha1.LabelCredentials, acc.SecretRef.Namespace, acc.SecretRef.Name, v1alpha1.LabelCredentials)}
	}
	acc.CredentialsVersion = string(secret.UID) + "/" + secret.ResourceVersion
	n, period := acc.Settings.EffectiveRateLimit()
	cfg := cf.AccountConfig{Key: acc.Key, BaseURL: baseURL, RateLimit: cf.RateLimit{Requests: n, Period: period}}
	value := func(key string) (string, error) {
		v := string(secret.Data[key])
		if v == "" {
			return "", &causeError{Reason: v1alpha1.ReasonCredentialsMissing, Terminal: true,
				Message: fmt.Sprintf("credentials Secret %s has no key %q (or it is empty)", acc.SecretRef, key)}
		}
		if len(v) > 4096 || containsControl(v) {
			return "", &causeError{Reason: v1alpha1.ReasonCredentialsInvalid, Terminal: true,
				Message: fmt.Sprintf("credentials Secret %s key %q does not hold a usable credential", acc.SecretRef, key)}
		}
		return v, nil
	}
	var err error
	if acc.Keys.Legacy() {
		if cfg.APIKey, err = value(acc.Keys.APIKeyKey); err != nil {
			return cfg, err
		}
		cfg.Email, err = value(acc.Keys.EmailKey)
		return cfg, err
	}
	cfg.APIToken, err = value(acc.Keys.TokenKey())
	return cfg, err
}

// checkAPIURL refuses an API URL the operator's admin did not allow.
func (a *Accounts) checkAPIURL(acc *account, baseURL string) error {
	allowed := a.AllowedURLs
	if allowed == nil {
		var err error
		if allowed, err = NewAPIURLAllowList([]string{DefaultAllowedAPIURLs}, a.DefaultAPIURL); err != nil {
			return fmt.Errorf("building the API URL allow-list: %w", err)
		}
	}
	if allowed.Allowed(baseURL) {
		return nil
	}
	return &causeError{Reason: v1alpha1.ReasonAPIURLNotAllowed, Terminal: true,
		Message: fmt.Sprintf("API URL %q of %s %q is not allowed by the operator (--allowed-api-urls=%s); use an allowed URL or ask the operator's admin to add a prefix (Helm value allowedAPIURLs)",
			redactUserInfo(baseURL), acc.Kind, acc.Object.GetName(), allowed)}
}

// redactUserInfo hides a password a URL may carry, for messages.
func redactUserInfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("redacted")
	return u.String()
}

func containsControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// resolved is an account a ServiceToken may use, with its client.
type resolved struct {
	Account *account
	Client  cf.Client
	Scope   cf.Scope
	// Shared keys what every account object on the same credentials shares:
	// the token inventory and the renewal plan (Cloudflare budgets per user,
	// and the same credentials see the same tokens).
	Shared string
}

// sharedKey is the credentials key of the account's client, or the account's
// own key when the factory cannot tell.
func (a *Accounts) sharedKey(accountKey string) string {
	if src, ok := a.Factory.(cf.LimiterSource); ok {
		if k := src.CredentialsKey(accountKey); k != "" {
			return k
		}
	}
	return accountKey
}

// Resolve finds a ServiceToken's account, checks it may be used, and returns
// its client. Errors are *causeError for anything a person must fix.
func (a *Accounts) Resolve(ctx context.Context, st *v1alpha1.ServiceToken, kind string) (*resolved, error) {
	acc, err := a.get(ctx, kind, st.Namespace, st.Spec.AccountRef.Name)
	if apierrors.IsNotFound(err) {
		return nil, &causeError{Reason: v1alpha1.ReasonAccountNotFound,
			Message: fmt.Sprintf("%s %q not found; create it (spec.accountRef is immutable: to use another account, recreate the ServiceToken)", kind, st.Spec.AccountRef.Name)}
	}
	if err != nil {
		return nil, err
	}
	if err := sameAccount(st, acc); err != nil {
		return nil, err
	}
	if acc.Selector != nil {
		ok, err := a.namespaceAllowed(ctx, acc.Selector, st.Namespace)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &causeError{Reason: v1alpha1.ReasonAccountNotAllowed, Terminal: true,
				Message: fmt.Sprintf("ClusterCloudflareAccount %q does not allow namespace %q (spec.namespaceSelector)", acc.Object.GetName(), st.Namespace)}
		}
	}
	if c := meta.FindStatusCondition(acc.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		msg := fmt.Sprintf("%s %q is not Ready", kind, st.Spec.AccountRef.Name)
		if c != nil {
			msg += ": " + c.Message
		}
		return nil, &causeError{Reason: v1alpha1.ReasonAccountNotReady, Message: msg}
	}
	scope := cf.Scope{AccountID: acc.Settings.AccountID, ZoneID: st.Spec.ZoneID}
	// The account controller reads the credentials Secret and keeps the
	// account's client current (on every change of the account, and every
	// credentialsRecheck). Reading the Secret again here would cost one API
	// GET per ServiceToken reconcile: 5,000 on a restart of 5,000 objects.
	if c, ok := a.cachedClient(acc.Key); ok {
		return &resolved{Account: acc, Client: c, Scope: scope, Shared: a.sharedKey(acc.Key)}, nil
	}
	cfg, err := a.config(ctx, acc)
	if err != nil {
		return nil, err
	}
	c, err := a.Factory.ClientFor(cfg)
	if err != nil {
		return nil, &causeError{Reason: v1alpha1.ReasonCredentialsInvalid, Terminal: true, Message: err.Error()}
	}
	c, _ = a.wrap(c, true)
	a.rereadDone(acc.Key)
	return &resolved{Account: acc, Client: c, Scope: scope, Shared: a.sharedKey(acc.Key)}, nil
}

// sameAccount refuses an account object that now names another Cloudflare
// account than the one the ServiceToken's token lives in (status.accountID):
// the account object was deleted and made again with another spec.accountID.
// Creating a token in the new account would silently hand workloads another
// token ID, and deleting by ID there could never reach the real token.
func sameAccount(st *v1alpha1.ServiceToken, acc *account) error {
	had := st.Status.AccountID
	if had == "" || had == acc.Settings.AccountID {
		return nil
	}
	token := "this ServiceToken's token"
	if st.Status.TokenID != "" {
		token = "token " + st.Status.TokenID
	}
	name := acc.Object.GetName()
	return &causeError{Reason: v1alpha1.ReasonAccountChanged, Terminal: true, Message: fmt.Sprintf(
		"%s lives in Cloudflare account %s, but %s %q now names account %s; nothing is created or deleted in either. "+
			"Set spec.accountID of %s %q back to %s (recreate it), or release this ServiceToken without touching Cloudflare "+
			"(annotate it %s=true and delete it; the token stays in %s) and create a new ServiceToken",
		token, had, acc.Kind, name, acc.Settings.AccountID, acc.Kind, name, had, v1alpha1.AnnotationForceDelete, had)}
}

func (a *Accounts) namespaceAllowed(ctx context.Context, sel *metav1.LabelSelector, namespace string) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, &causeError{Reason: v1alpha1.ReasonAccountNotAllowed, Terminal: true,
			Message: fmt.Sprintf("invalid namespaceSelector: %v", err)}
	}
	if s.Empty() {
		return true, nil
	}
	ns := &corev1.Namespace{}
	if err := a.Client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	return s.Matches(labels.Set(ns.Labels)), nil
}

// ResolveForDeletion finds what deleting a ServiceToken's token needs: the
// account and a client. Unlike Resolve it ignores the namespaceSelector and
// the account's Ready condition (a token the operator created must be
// deletable), and it falls back to the last client built for the account when
// the credentials Secret is gone, as when a namespace is deleted with
// everything in it (the account's finalizer keeps the account meanwhile).
func (a *Accounts) ResolveForDeletion(ctx context.Context, st *v1alpha1.ServiceToken, kind string) (*resolved, error) {
	acc, err := a.get(ctx, kind, st.Namespace, st.Spec.AccountRef.Name)
	if apierrors.IsNotFound(err) {
		return nil, &causeError{Reason: v1alpha1.ReasonAccountNotFound,
			Message: fmt.Sprintf("%s %q not found, so its token cannot be deleted", kind, st.Spec.AccountRef.Name)}
	}
	if err != nil {
		return nil, err
	}
	if err := sameAccount(st, acc); err != nil {
		return nil, err
	}
	scope := cf.Scope{AccountID: acc.Settings.AccountID, ZoneID: st.Spec.ZoneID}
	cfg, err := a.config(ctx, acc)
	if err != nil {
		if c, ok := a.wrap(a.Factory.Cached(acc.Key)); ok {
			return &resolved{Account: acc, Client: c, Scope: scope, Shared: a.sharedKey(acc.Key)}, nil
		}
		return nil, err
	}
	c, err := a.Factory.ClientFor(cfg)
	if err != nil {
		return nil, &causeError{Reason: v1alpha1.ReasonCredentialsInvalid, Terminal: true, Message: err.Error()}
	}
	c, _ = a.wrap(c, true)
	return &resolved{Account: acc, Client: c, Scope: scope, Shared: a.sharedKey(acc.Key)}, nil
}

// asCause unwraps an *causeError.
func asCause(err error) (*causeError, bool) {
	var ae *causeError
	ok := errors.As(err, &ae)
	return ae, ok
}

// credentialsRecheck is how often an account's credentials are tried again
// on Cloudflare with nothing changed here (a change of the Secret is watched:
// rotated credentials are picked up at once).
const credentialsRecheck = 5 * time.Minute
