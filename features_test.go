package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// mapKeys returns the keys of the map literal assigned to the package
// variable name in a Go source file: string literals as they are, selector
// keys (specs.PIDNamespace) by their selector name, and with each value's
// integer literal when it is one.
func mapKeys(t *testing.T, file, name string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != name || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		found = true
		for _, e := range lit.Elts {
			kv := e.(*ast.KeyValueExpr)
			var k, v string
			switch key := kv.Key.(type) {
			case *ast.BasicLit:
				k, _ = strconv.Unquote(key.Value)
			case *ast.SelectorExpr:
				k = key.Sel.Name
			}
			if b, ok := kv.Value.(*ast.BasicLit); ok {
				v = b.Value
			}
			keys[k] = v
		}
		return false
	})
	if !found {
		t.Fatalf("no map literal %s in %s", name, file)
	}
	return keys
}

func sorted(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestFeaturesMatchAgent keeps `kabuto features` in step with what the
// agent implements.
func TestFeaturesMatchAgent(t *testing.T) {
	opts := mapKeys(t, "guest/agent/mounts.go", "mountFlags")
	for k, v := range mapKeys(t, "guest/agent/mounts.go", "propagationFlags") {
		opts[k] = v
	}
	if got, want := strings.Join(supportedMountOptions, " "), strings.Join(sorted(opts), " "); got != want {
		t.Errorf("mount options:\n features %s\n agent    %s", got, want)
	}

	caps := mapKeys(t, "guest/agent/caps.go", "capNames")
	byNum := make([]string, len(caps))
	for name, num := range caps {
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 || n >= len(caps) {
			t.Fatalf("capability %s numbered %q", name, num)
		}
		byNum[n] = name
	}
	if got, want := strings.Join(supportedCapabilities, " "), strings.Join(byNum, " "); got != want {
		t.Errorf("capabilities:\n features %s\n agent    %s", got, want)
	}

	names := map[string]specs.LinuxNamespaceType{
		"PIDNamespace": specs.PIDNamespace, "NetworkNamespace": specs.NetworkNamespace,
		"MountNamespace": specs.MountNamespace, "IPCNamespace": specs.IPCNamespace,
		"UTSNamespace": specs.UTSNamespace, "UserNamespace": specs.UserNamespace,
		"CgroupNamespace": specs.CgroupNamespace, "TimeNamespace": specs.TimeNamespace,
	}
	var ns []string
	for k := range mapKeys(t, "guest/agent/container.go", "nsFlags") {
		v, ok := names[k]
		if !ok {
			t.Fatalf("unknown namespace constant %s", k)
		}
		ns = append(ns, string(v))
	}
	sort.Strings(ns)
	if got, want := strings.Join(supportedNamespaces, " "), strings.Join(ns, " "); got != want {
		t.Errorf("namespaces:\n features %s\n agent    %s", got, want)
	}
}

func TestFeaturesJSON(t *testing.T) {
	b, err := json.Marshal(kabutoFeatures())
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f["ociVersionMin"] != "1.0.0" || f["ociVersionMax"] != specs.Version {
		t.Errorf("versions %v %v", f["ociVersionMin"], f["ociVersionMax"])
	}
	linux := f["linux"].(map[string]any)
	sc := linux["seccomp"].(map[string]any)
	if sc["enabled"] != true || strings.Contains(string(b), "SCMP_ACT_NOTIFY") {
		t.Errorf("seccomp %v", sc)
	}
	for _, lsm := range []string{"apparmor", "selinux", "intelRdt"} {
		if linux[lsm].(map[string]any)["enabled"] != false {
			t.Errorf("%s: %v", lsm, linux[lsm])
		}
	}
	ann := f["annotations"].(map[string]any)
	if ann[annotationCheckpoint] != "false" || ann[annotationRuncCheckpoint] != "false" || ann[annotationVersion] != version {
		t.Errorf("annotations %v", ann)
	}
}
