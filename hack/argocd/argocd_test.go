package argocd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The test files follow Argo CD's format (resource_customizations/*/*/
// health_test.yaml and actions/action_test.yaml in argoproj/argo-cd), so the
// scripts can be contributed upstream as they are.

type healthTestFile struct {
	Tests []struct {
		HealthStatus HealthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

type actionTestFile struct {
	DiscoveryTests []struct {
		InputPath string   `json:"inputPath"`
		Result    []Action `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

// requestAnnotations are the annotations each action sets to the current
// time; their value is checked for "now", not compared with the fixture.
var requestAnnotations = map[string]string{
	"rotate":  "access.servicetoken.dev/rotate-requested-at",
	"refresh": "access.servicetoken.dev/refresh-requested-at",
}

// The scripts ship from config/argocd; their test cases and fixtures stay
// here, under the same resource_customizations/<group>/<Kind> paths.
const (
	scriptsRoot   = "../../config/argocd"
	configMapPath = scriptsRoot + "/argocd-cm.yaml"
)

func load(t *testing.T) []Customization {
	t.Helper()
	cs, err := Load(scriptsRoot)
	if err != nil {
		t.Fatalf("loading the customizations: %v", err)
	}
	return cs
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	obj := map[string]any{}
	readYAML(t, path, &obj)
	return obj
}

func TestEveryKindHasAHealthCheckAndTheServiceTokenItsActions(t *testing.T) {
	want := map[string][]string{
		"access.servicetoken.dev_ServiceToken":             {"refresh", "rotate"},
		"access.servicetoken.dev_CloudflareAccount":        {},
		"access.servicetoken.dev_ClusterCloudflareAccount": {},
	}
	got := map[string][]string{}
	for _, c := range load(t) {
		if c.Health == "" {
			t.Errorf("%s: no health.lua", c.Dir)
		}
		got[c.Key()] = c.ActionNames()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("customizations (kind: actions) = %v, want %v", got, want)
	}
}

// One health.lua serves every kind; a fix must reach all the copies.
func TestTheHealthScriptsAreIdentical(t *testing.T) {
	cs := load(t)
	for _, c := range cs[1:] {
		if c.Health != cs[0].Health {
			t.Errorf("%s/health.lua differs from %s/health.lua: keep the copies identical", c.Dir, cs[0].Dir)
		}
	}
}

func TestHealthChecks(t *testing.T) {
	for _, c := range load(t) {
		var file healthTestFile
		readYAML(t, filepath.Join(c.Dir, "health_test.yaml"), &file)
		seen := map[string]bool{}
		for _, tc := range file.Tests {
			seen[tc.HealthStatus.Status] = true
			t.Run(c.Kind+"/"+tc.InputPath, func(t *testing.T) {
				got, err := RunHealth(c.Health, readObject(t, filepath.Join(c.Dir, tc.InputPath)))
				if err != nil {
					t.Fatalf("health.lua: %v", err)
				}
				if got != tc.HealthStatus {
					t.Errorf("health = %+v\n  want %+v", got, tc.HealthStatus)
				}
			})
		}
		for _, status := range []string{"Healthy", "Progressing", "Degraded"} {
			if !seen[status] {
				t.Errorf("%s/health_test.yaml has no case for %s", c.Dir, status)
			}
		}
		checkEveryFixtureUsed(t, filepath.Join(c.Dir, "testdata"), seenPaths(file))
	}
}

func seenPaths(f healthTestFile) map[string]bool {
	m := map[string]bool{}
	for _, tc := range f.Tests {
		m[filepath.Clean(tc.InputPath)] = true
	}
	return m
}

func TestActions(t *testing.T) {
	for _, c := range load(t) {
		if c.Discovery == "" {
			continue
		}
		dir := filepath.Join(c.Dir, "actions")
		var file actionTestFile
		readYAML(t, filepath.Join(dir, "action_test.yaml"), &file)
		used := map[string]bool{}

		for _, tc := range file.DiscoveryTests {
			used[filepath.Clean(tc.InputPath)] = true
			t.Run(c.Kind+"/discovery/"+tc.InputPath, func(t *testing.T) {
				got, err := RunDiscovery(c.Discovery, readObject(t, filepath.Join(dir, tc.InputPath)))
				if err != nil {
					t.Fatalf("discovery.lua: %v", err)
				}
				if !reflect.DeepEqual(got, tc.Result) {
					t.Errorf("actions = %+v\n   want %+v", got, tc.Result)
				}
			})
		}

		tested := map[string]bool{}
		for _, tc := range file.ActionTests {
			used[filepath.Clean(tc.InputPath)] = true
			used[filepath.Clean(tc.ExpectedOutputPath)] = true
			tested[tc.Action] = true
			t.Run(c.Kind+"/"+tc.Action+"/"+tc.InputPath, func(t *testing.T) {
				script, ok := c.Actions[tc.Action]
				if !ok {
					t.Fatalf("no action %q", tc.Action)
				}
				before := time.Now().UTC().Truncate(time.Second)
				got, err := RunAction(script, readObject(t, filepath.Join(dir, tc.InputPath)))
				after := time.Now().UTC()
				if err != nil {
					t.Fatalf("action.lua: %v", err)
				}
				want := readObject(t, filepath.Join(dir, tc.ExpectedOutputPath))
				if key, ok := requestAnnotations[tc.Action]; ok {
					checkTimestamp(t, got, want, key, before, after)
				}
				if !reflect.DeepEqual(got, want) {
					gotYAML, _ := yaml.Marshal(got)
					wantYAML, _ := yaml.Marshal(want)
					t.Errorf("action output:\n%s\nwant:\n%s", gotYAML, wantYAML)
				}
			})
		}
		for _, name := range c.ActionNames() {
			if !tested[name] {
				t.Errorf("%s/action_test.yaml has no test of action %q", dir, name)
			}
		}
		checkEveryFixtureUsed(t, filepath.Join(dir, "testdata"), used)
	}
}

// checkTimestamp checks that the action set annotation key to the current
// UTC time (RFC 3339, whole seconds), then copies the fixture's value into
// got so the rest of the object can be compared exactly.
func checkTimestamp(t *testing.T, got, want map[string]any, key string, before, after time.Time) {
	t.Helper()
	value, _ := annotations(got)[key].(string)
	if value == "" {
		t.Fatalf("the action did not set the annotation %s", key)
	}
	ts, err := time.Parse(time.RFC3339, value)
	switch {
	case err != nil || !strings.HasSuffix(value, "Z"):
		t.Errorf("annotation %s = %q, want an RFC 3339 time in UTC", key, value)
	case ts.Before(before) || ts.After(after):
		t.Errorf("annotation %s = %q, want the current time (%s .. %s)", key, value,
			before.Format(time.RFC3339), after.Format(time.RFC3339))
	}
	wantValue, ok := annotations(want)[key]
	if !ok {
		t.Fatalf("the expected output has no annotation %s", key)
	}
	annotations(got)[key] = wantValue
}

func annotations(obj map[string]any) map[string]any {
	meta, _ := obj["metadata"].(map[string]any)
	a, _ := meta["annotations"].(map[string]any)
	if a == nil {
		return map[string]any{}
	}
	return a
}

// checkEveryFixtureUsed fails for a file in testdata that no test reads: a
// case someone meant to add and didn't.
func checkEveryFixtureUsed(t *testing.T, testdata string, used map[string]bool) {
	t.Helper()
	entries, err := os.ReadDir(testdata)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if rel := filepath.Join("testdata", e.Name()); !used[rel] {
			t.Errorf("%s is not used by any test", filepath.Join(testdata, e.Name()))
		}
	}
}

func TestArgoCDConfigMapIsUpToDate(t *testing.T) {
	cs := load(t)
	want, err := ConfigMap(cs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(configMapPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("config/argocd/argocd-cm.yaml is out of date: run make argocd-cm")
	}
}

// The ConfigMap must give Argo CD the scripts byte for byte.
func TestArgoCDConfigMapCarriesTheScripts(t *testing.T) {
	var cm corev1.ConfigMap
	readYAML(t, configMapPath, &cm)
	if cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" {
		t.Fatalf("argocd-cm.yaml holds %s %s, want ConfigMap argocd-cm", cm.Kind, cm.Name)
	}
	for _, c := range load(t) {
		if got := cm.Data["resource.customizations.health."+c.Key()]; got != c.Health {
			t.Errorf("%s: health script in argocd-cm.yaml differs from health.lua", c.Kind)
		}
		raw, ok := cm.Data["resource.customizations.actions."+c.Key()]
		if c.Discovery == "" {
			if ok {
				t.Errorf("%s: argocd-cm.yaml has actions, the kind has none", c.Kind)
			}
			continue
		}
		var actions struct {
			Discovery   string `json:"discovery.lua"`
			Definitions []struct {
				Name   string `json:"name"`
				Action string `json:"action.lua"`
			} `json:"definitions"`
		}
		if err := yaml.UnmarshalStrict([]byte(raw), &actions); err != nil {
			t.Fatalf("%s: actions in argocd-cm.yaml: %v", c.Kind, err)
		}
		if actions.Discovery != c.Discovery {
			t.Errorf("%s: discovery script in argocd-cm.yaml differs from actions/discovery.lua", c.Kind)
		}
		got := map[string]string{}
		for _, d := range actions.Definitions {
			got[d.Name] = d.Action
		}
		if !reflect.DeepEqual(got, c.Actions) {
			t.Errorf("%s: action definitions in argocd-cm.yaml differ from actions/*/action.lua", c.Kind)
		}
	}
}

// Scripts from argocd-cm run without Lua's standard libraries; the test VM
// must not be more generous than Argo CD.
func TestTheVMHasOnlyWhatArgoCDOffers(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"name": "x"}}
	for _, script := range []string{
		`return {status = string.upper("healthy")}`,
		`return {status = os.getenv("HOME")}`,
		`io.write("x") return {}`,
	} {
		if _, err := RunHealth(script, obj); err == nil {
			t.Errorf("script %q ran; Argo CD would reject it", script)
		}
	}
	hs, err := RunHealth(`local os = require("os") return {status = "Healthy", message = os.date("!%Y-%m-%dT%H:%M:%SZ", 0)}`, obj)
	if err != nil || hs.Message != "1970-01-01T00:00:00Z" {
		t.Errorf("os.date = %+v, %v; want 1970-01-01T00:00:00Z", hs, err)
	}
	hs, err = RunHealth(`return {status = "Fine"}`, obj)
	if err != nil || hs.Status != "Unknown" {
		t.Errorf("an invalid status gave %+v, %v; want Unknown as Argo CD does", hs, err)
	}
}
