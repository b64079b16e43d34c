package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/mqttgate/mqttgate/limits"
)

const bansUsage = `usage:
  mqttgate bans [-f FILE] list
  mqttgate bans [-f FILE] add clientid|username|ip|identity VALUE [-user USER] [-for DURATION | -until RFC3339] [-reason TEXT]
  mqttgate bans [-f FILE] remove clientid|username|ip|identity VALUE [USER]
FILE defaults to MQTTGATE_BANS_FILE. An ip VALUE may be a CIDR. An identity
ban (what flapping writes) bans the client id VALUE for the identity USER
only: user:NAME (the authenticated user name), cert:SUBJECT, or ip:ADDRESS. A running
proxy picks changes up when it next checks the file (MQTTGATE_FILE_POLL_INTERVAL) or on SIGHUP.
`

// bansCmd edits the bans file.
func bansCmd(args []string, environ map[string]string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bans", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("f", environ[envPrefix+"BANS_FILE"], "")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || *file == "" {
		return usageError{bansUsage}
	}
	bans, err := limits.OpenBans(*file)
	if err != nil {
		return err
	}
	args = fs.Args()
	switch {
	case args[0] == "list" && len(args) == 1:
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "KIND\tVALUE\tUSER\tUNTIL\tREASON")
		now := time.Now()
		for _, b := range bans.List() {
			until := b.Until.Format(time.RFC3339)
			if !now.Before(b.Until) {
				until += " (expired)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", b.Kind, b.Value, b.User, until, b.Reason)
		}
		return w.Flush()
	case args[0] == "add" && len(args) >= 3:
		af := flag.NewFlagSet("add", flag.ContinueOnError)
		af.SetOutput(io.Discard)
		forD := af.Duration("for", 0, "")
		until := af.String("until", "", "")
		reason := af.String("reason", "", "")
		user := af.String("user", "", "")
		if err := af.Parse(args[3:]); err != nil || af.NArg() != 0 || (*forD != 0) == (*until != "") {
			return usageError{bansUsage}
		}
		ban := limits.Ban{Kind: args[1], Value: args[2], User: *user, Reason: *reason, Until: time.Now().Add(*forD).UTC()}
		if *until != "" {
			if ban.Until, err = time.Parse(time.RFC3339, *until); err != nil {
				return fmt.Errorf("-until: %w", err)
			}
		}
		if err := bans.Add(ban); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "banned %s %s until %s\n", ban.Kind, ban.Value, ban.Until.Format(time.RFC3339))
		return nil
	case args[0] == "remove" && (len(args) == 3 || len(args) == 4):
		user := ""
		if len(args) == 4 {
			user = args[3]
		}
		found, err := bans.Remove(args[1], args[2], user)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no ban on %s %s", args[1], args[2])
		}
		fmt.Fprintf(stdout, "removed the ban on %s %s\n", args[1], args[2])
		return nil
	}
	return usageError{bansUsage}
}
