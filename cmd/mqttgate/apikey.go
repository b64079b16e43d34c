package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/mqttgate/mqttgate/proxy/admin"
)

const apikeyUsage = `usage:
  mqttgate apikey create NAME -role viewer|operator|admin -expires DURATION [-f FILE]
  mqttgate apikey list [-f FILE]
  mqttgate apikey revoke NAME [-f FILE]
FILE defaults to MQTTGATE_ADMIN_KEYS_FILE. create prints the secret once,
alone on the last line; the file keeps only its SHA-256. viewer may read,
operator may also kick, ban and drain, admin may also reload. A running
proxy picks changes up when it next checks the file or on SIGHUP.
`

// apikeyCmd manages the admin API's keys file.
func apikeyCmd(args []string, environ map[string]string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{apikeyUsage}
	}
	sub, args := args[0], args[1:]
	var name string
	if (sub == "create" || sub == "revoke") && len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("apikey", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("f", environ[envPrefix+"ADMIN_KEYS_FILE"], "")
	role := fs.String("role", "", "")
	expires := fs.Duration("expires", 0, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *file == "" {
		return usageError{apikeyUsage}
	}
	keys, err := admin.OpenKeys(*file)
	if err != nil {
		return err
	}
	switch {
	case sub == "create" && name != "":
		r, err := admin.ParseRole(*role)
		if err != nil || *expires <= 0 {
			return usageError{apikeyUsage}
		}
		secret, err := keys.Create(name, r, *expires, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created key %s (%s), expires %s; the secret, shown only now:\n%s\n", name, r,
			time.Now().Add(*expires).UTC().Format(time.RFC3339), secret)
		return nil
	case sub == "list" && name == "":
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tROLE\tCREATED\tEXPIRES")
		now := time.Now()
		for _, k := range keys.List() {
			exp := k.Expires.Format(time.RFC3339)
			if !now.Before(k.Expires) {
				exp += " (expired)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", k.Name, k.Role, k.Created.Format(time.RFC3339), exp)
		}
		return w.Flush()
	case sub == "revoke" && name != "":
		found, err := keys.Revoke(name)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no key named %q", name)
		}
		fmt.Fprintf(stdout, "revoked key %s\n", name)
		return nil
	}
	return usageError{apikeyUsage}
}
