package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/meshgate/meshgate/deployments"
)

// mintToken implements `meshgate-demo token`: it prints a JWT signed with
// the demo key (deployments.SignDemoToken), standing in for an identity
// provider.
func mintToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshgate-demo token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "alice", "the subject (user) the token is for")
	role := fs.String("role", "customer", `the "role" claim (customer or admin)`)
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: meshgate-demo token [-sub NAME] [-role ROLE] [-ttl 1h]\n\n"+
			"Prints a JWT signed with the demo key (deployments/policies/demo-jwks.json verifies it).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *ttl <= 0 {
		fmt.Fprintln(stderr, "invalid -ttl: must be greater than 0")
		return 2
	}
	tok, err := deployments.SignDemoToken(*sub, *role, time.Now(), *ttl)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
