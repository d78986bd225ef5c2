package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// The Lua runtime below mirrors how Argo CD runs resource customizations from
// argocd-cm (util/lua/lua.go in argoproj/argo-cd): a fresh VM per call
// without the standard libraries (only package, base, table and a safe os
// with time and date), the live object as the global table obj, a 1-second
// deadline, and the script's return value converted to JSON. A script that
// passes here but needs more (the string library, say) fails here too.

// scriptTimeout is Argo CD's deadline for one script.
const scriptTimeout = time.Second

// HealthStatus is what health.lua returns.
type HealthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// validHealth are the statuses Argo CD accepts; anything else becomes Unknown.
var validHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// Action is one entry of what actions/discovery.lua returns.
type Action struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled"`
}

// RunHealth runs a health.lua script on obj.
func RunHealth(script string, obj map[string]any) (HealthStatus, error) {
	out, err := run(script, obj)
	if err != nil {
		return HealthStatus{}, err
	}
	var hs HealthStatus
	if err := json.Unmarshal(out, &hs); err != nil {
		return HealthStatus{}, fmt.Errorf("health.lua must return a table {status, message}: %w", err)
	}
	if !validHealth[hs.Status] {
		// What Argo CD shows for a status it does not know.
		return HealthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// RunDiscovery runs an actions/discovery.lua script on obj and returns the
// actions sorted by name.
func RunDiscovery(script string, obj map[string]any) ([]Action, error) {
	out, err := run(script, obj)
	if err != nil {
		return nil, err
	}
	if string(out) == "[]" { // an empty Lua table: no actions
		return []Action{}, nil
	}
	var byName map[string]json.RawMessage
	if err := json.Unmarshal(out, &byName); err != nil {
		return nil, fmt.Errorf("discovery.lua must return a table keyed by action name: %w", err)
	}
	actions := make([]Action, 0, len(byName))
	for name, raw := range byName {
		a := Action{Name: name}
		var fields map[string]any
		if json.Unmarshal(raw, &fields) == nil { // {} encodes as [] and means enabled
			a.Disabled, _ = fields["disabled"].(bool)
		}
		actions = append(actions, a)
	}
	sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
	return actions, nil
}

// RunAction runs an action.lua script on obj and returns the object it
// returns (the old-style action output Argo CD patches into the live object).
func RunAction(script string, obj map[string]any) (map[string]any, error) {
	out, err := run(script, obj)
	if err != nil {
		return nil, err
	}
	var result map[string]any
	if err := json.Unmarshal(out, &result); err != nil {
		return nil, fmt.Errorf("action.lua must return the modified obj: %w", err)
	}
	// Lua cannot tell an empty map from an empty list; Argo CD keeps a
	// field's original type when the script returns it empty.
	return restoreEmptyMaps(result, obj), nil
}

// run executes script with obj as the global obj and returns its return
// value as JSON.
func run(script string, obj map[string]any) ([]byte, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening Lua library %q: %w", lib.name, err)
		}
	}
	L.PreloadModule(lua.OsLibName, safeOsLoader) // local os = require("os")

	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	ret := L.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	v, err := fromLua(ret)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// toLua converts a decoded JSON/YAML value into Lua values, as Argo CD does.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	}
	return lua.LNil
}

// fromLua converts a Lua value to what encoding/json would decode: a table
// with a sequence 1..n is a list, any other non-empty table a map keyed by
// strings, and an empty table an empty list (as Argo CD's JSON encoder does).
func fromLua(v lua.LValue) (any, error) {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(v), nil
	case lua.LString:
		return string(v), nil
	case lua.LNumber:
		return float64(v), nil
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			list := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				item, err := fromLua(v.RawGetInt(i))
				if err != nil {
					return nil, err
				}
				list = append(list, item)
			}
			return list, nil
		}
		m := map[string]any{}
		var err error
		v.ForEach(func(k, item lua.LValue) {
			if err != nil {
				return
			}
			key, ok := k.(lua.LString)
			if !ok {
				err = fmt.Errorf("cannot encode a Lua table with key %v (%s) as JSON", k, k.Type())
				return
			}
			m[string(key)], err = fromLua(item)
		})
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return []any{}, nil
		}
		return m, nil
	}
	return nil, fmt.Errorf("cannot encode a Lua %s as JSON", v.Type())
}

// restoreEmptyMaps turns an empty list back into the map it was in orig.
func restoreEmptyMaps(out, orig map[string]any) map[string]any {
	for k, ov := range orig {
		switch nv := out[k].(type) {
		case map[string]any:
			if om, ok := ov.(map[string]any); ok {
				out[k] = restoreEmptyMaps(nv, om)
			}
		case []any:
			if om, ok := ov.(map[string]any); ok && len(nv) == 0 {
				out[k] = om
			}
		}
	}
	return out
}

// The safe os library of Argo CD: os.time and os.date, nothing that touches
// the file system, the environment or the process.
var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(L *lua.LState) int {
	L.Push(L.RegisterModule(lua.OsLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(L *lua.LState) int {
	L.Push(L.SetFuncs(L.NewTable(), safeOsFuncs))
	return 1
}

// osTime: os.time() is now in Unix seconds; os.time{year=, month=, day=,
// hour=, min=, sec=} is that local time.
func osTime(L *lua.LState) int {
	if L.GetTop() == 0 {
		L.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := L.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	d := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	L.Push(lua.LNumber(d.Unix()))
	return 1
}

// osDate: os.date([format [, time]]); a leading "!" formats in UTC. The
// conversions our scripts use (%Y %m %d %H %M %S %X) format as in Argo CD.
func osDate(L *lua.LState) int {
	now := time.Now()
	format := "%c"
	if L.GetTop() >= 1 {
		format = L.CheckString(1)
	}
	if L.GetTop() >= 2 {
		now = time.Unix(L.CheckInt64(2), 0)
	}
	if strings.HasPrefix(format, "!") {
		now, format = now.UTC(), format[1:]
	}
	if strings.HasPrefix(format, "*t") {
		t := L.NewTable()
		for k, v := range map[string]int{"year": now.Year(), "month": int(now.Month()), "day": now.Day(),
			"hour": now.Hour(), "min": now.Minute(), "sec": now.Second(), "wday": int(now.Weekday()) + 1, "yday": now.YearDay()} {
			t.RawSetString(k, lua.LNumber(v))
		}
		t.RawSetString("isdst", lua.LFalse)
		L.Push(t)
		return 1
	}
	L.Push(lua.LString(strftime(now, format)))
	return 1
}

var strftimeLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'S': "05",
	'x': "01/02/06", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		switch f := format[i]; {
		case f == '%':
			b.WriteByte('%')
		case f == 'w':
			fmt.Fprint(&b, int(t.Weekday()))
		case strftimeLayouts[f] != "":
			b.WriteString(t.Format(strftimeLayouts[f]))
		default:
			b.WriteByte('%')
			b.WriteByte(f)
		}
	}
	return b.String()
}
