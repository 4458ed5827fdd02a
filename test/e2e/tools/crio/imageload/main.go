// Command imageload copies OCI image archives (hack/images.sh's tarballs) into a
// containers/storage image store, the one CRI-O serves images from, under the names given.
// It links the image and storage libraries of the CRI-O it feeds, so the store's layout is
// the one that CRI-O reads. Run it while CRI-O is stopped.
//
// Usage: imageload --root DIR --runroot DIR --driver overlay|vfs NAME=TARBALL...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
)

func main() {
	// The store applies layers in a re-executed child of this program.
	if reexec.Init() {
		return
	}
	root := flag.String("root", "", "the store's graph root (CRI-O's --root)")
	runroot := flag.String("runroot", "", "the store's run root (CRI-O's --runroot)")
	driver := flag.String("driver", "overlay", "the storage driver (CRI-O's --storage-driver): overlay or vfs")
	flag.Parse()
	if *root == "" || *runroot == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: imageload --root DIR --runroot DIR --driver overlay|vfs NAME=TARBALL...")
		os.Exit(2)
	}
	if err := load(*root, *runroot, *driver, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "imageload:", err)
		os.Exit(1)
	}
}

func load(root, runroot, driver string, pairs []string) error {
	store, err := storage.GetStore(storage.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: driver})
	if err != nil {
		return fmt.Errorf("opening the image store at %s (driver %s): %w", root, driver, err)
	}
	defer func() { _, _ = store.Shutdown(false) }()
	// The archives are files built on this machine: accept them as they are.
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()
	for _, p := range pairs {
		name, tarball, ok := strings.Cut(p, "=")
		if !ok || name == "" || tarball == "" {
			return fmt.Errorf("argument %q: expected NAME=TARBALL, e.g. localhost/gdp/pause:e2e=pause.tar", p)
		}
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return fmt.Errorf("image name %q: %w", name, err)
		}
		src, err := archive.ParseReference(tarball)
		if err != nil {
			return fmt.Errorf("archive %s: %w", tarball, err)
		}
		dst, err := istorage.Transport.NewStoreReference(store, named, "")
		if err != nil {
			return fmt.Errorf("store reference for %s: %w", name, err)
		}
		if _, err := copy.Image(context.Background(), policy, dst, src, &copy.Options{}); err != nil {
			return fmt.Errorf("copying %s into the store as %s: %w", tarball, name, err)
		}
	}
	return nil
}
