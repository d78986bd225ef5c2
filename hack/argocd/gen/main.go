// Command gen renders the Argo CD resource customizations under
// config/argocd/resource_customizations as an argocd-cm ConfigMap
// (`make argocd-cm` writes config/argocd/argocd-cm.yaml).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/servicetoken-operator/servicetoken-operator/hack/argocd"
)

func main() {
	dir := flag.String("dir", "config/argocd", "directory holding resource_customizations/")
	out := flag.String("out", "", "file to write (default: standard output)")
	flag.Parse()
	if err := run(*dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-cm:", err)
		os.Exit(1)
	}
}

func run(dir, out string) error {
	cs, err := argocd.Load(dir)
	if err != nil {
		return err
	}
	b, err := argocd.ConfigMap(cs)
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
