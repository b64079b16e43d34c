package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/google/renameio/v2"
	"github.com/mqttgate/mqttgate/authn"
)

const passwdUsage = `usage: mqttgate passwd [-c] [-b] [-D] [-H sha512-pbkdf2|sha512|bcrypt] [-I cost] FILE USER [PASSWORD]
  -c  create the file, replacing any existing one
  -b  batch: take PASSWORD from the command line instead of prompting
  -D  delete USER
  -H  hash: sha512-pbkdf2 (default, Mosquitto's $7$), sha512 ($6$) or bcrypt
  -I  PBKDF2 iterations or bcrypt cost (default 20000 or 10)
Without -b the password is prompted for without echo (or read as one line
when standard input is not a terminal). The file is written atomically,
mode 0600, in the format mosquitto_passwd writes.
`

// passwdCmd manages a password file like mosquitto_passwd.
func passwdCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	create := fs.Bool("c", false, "")
	batch := fs.Bool("b", false, "")
	del := fs.Bool("D", false, "")
	kind := fs.String("H", authn.HashPBKDF2, "")
	cost := fs.Int("I", 0, "")
	if err := fs.Parse(args); err != nil {
		return usageError{passwdUsage}
	}
	rest := fs.Args()
	want := 2
	if *batch {
		want = 3
	}
	if len(rest) != want || (*del && (*batch || *create)) {
		return usageError{passwdUsage}
	}
	file, user := rest[0], rest[1]

	pw, err := authn.ParsePasswords(nil)
	if err != nil {
		return err
	}
	if !*create {
		b, err := os.ReadFile(file)
		if err != nil && !(errors.Is(err, os.ErrNotExist) && !*del) {
			return err
		}
		if pw, err = authn.ParsePasswords(b); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	if *del {
		if !pw.Delete(user) {
			return fmt.Errorf("%s: no user %q", file, user)
		}
		return renameio.WriteFile(file, pw.Bytes(), 0o600)
	}
	var password []byte
	if *batch {
		password = []byte(rest[2])
	} else if password, err = promptPassword(stdin, stderr); err != nil {
		return err
	}
	hash, err := authn.HashPassword(*kind, password, *cost)
	if err != nil {
		return err
	}
	if err := pw.Set(user, hash); err != nil {
		return err
	}
	if err := renameio.WriteFile(file, pw.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: set the password of %s (%s)\n", file, user, *kind)
	return nil
}

// usageError prints usage and exits 2.
type usageError struct{ usage string }

func (e usageError) Error() string { return e.usage }

// promptPassword asks twice without echo on a terminal; otherwise it reads
// one line.
func promptPassword(stdin io.Reader, stderr io.Writer) ([]byte, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(stderr, "Reenter password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(a, b) {
			return nil, errors.New("passwords do not match")
		}
		return a, nil
	}
	line, err := bufio.NewReader(stdin).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return nil, errors.New("no password on standard input")
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
