// compose-config: `docker compose config` without Docker. Loads a compose file with the loader
// Docker Compose itself uses (compose-spec/compose-go), the same way: .env, interpolation
// (including ${VAR:?message}), schema validation, normalization, consistency checks.
// Usage: compose-config [-q] [-env-file FILE] COMPOSE_FILE...   (prints the resolved model unless -q)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	quiet := flag.Bool("q", false, "only validate, print nothing")
	envFile := flag.String("env-file", "", "the .env file (default: .env next to the first compose file)")
	flag.Parse()
	opts := []cli.ProjectOptionsFn{cli.WithOsEnv, cli.WithConfigFileEnv, cli.WithDefaultConfigPath}
	if *envFile != "" {
		opts = append(opts, cli.WithEnvFiles(*envFile))
	} else {
		opts = append(opts, cli.WithEnvFiles())
	}
	opts = append(opts, cli.WithDotEnv, cli.WithInterpolation(true), cli.WithResolvedPaths(true),
		cli.WithNormalization(true), cli.WithConsistency(true), cli.WithDefaultProfiles())
	options, err := cli.NewProjectOptions(flag.Args(), opts...)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	if *quiet {
		return
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fail(err)
	}
	fmt.Print(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
