// cdi-validate checks a CDI spec file with the CDI project's own library (the
// one containerd uses): it must parse and validate, and every device name given
// after it must be a device of the spec. Built by hack/k8s-components.sh; used
// by the real-node suite (test/e2e/sharing.sh).
//
// Usage: cdi-validate SPEC_FILE [QUALIFIED_DEVICE_NAME ...]
// Prints "valid: KIND, N devices" and exits 0, or prints what is wrong and exits 1.
package main

import (
	"fmt"
	"os"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cdi-validate SPEC_FILE [QUALIFIED_DEVICE_NAME ...]")
		os.Exit(2)
	}
	spec, err := cdi.ReadSpec(os.Args[1], 0)
	if err != nil {
		fmt.Printf("invalid: %v\n", err)
		os.Exit(1)
	}
	bad := 0
	for _, qualified := range os.Args[2:] {
		vendor, class, name, err := parser.ParseQualifiedName(qualified)
		if err != nil {
			fmt.Printf("invalid device name %q: %v\n", qualified, err)
			bad++
			continue
		}
		if vendor+"/"+class != spec.GetVendor()+"/"+spec.GetClass() || spec.GetDevice(name) == nil {
			fmt.Printf("device %q is not in the spec (kind %s/%s)\n", qualified, spec.GetVendor(), spec.GetClass())
			bad++
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
	fmt.Printf("valid: %s/%s, %d devices\n", spec.GetVendor(), spec.GetClass(), len(spec.Devices))
}
