package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/storeflow/storeflow/broker"
)

// passwd prints a BROKER_AUTH_FILE user line for the user named in args, with
// the password read from the first line of stdin (so it stays out of the
// shell's history and the process list).
func passwd(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" || strings.ContainsAny(args[0], " \t#") {
		return errors.New("passwd: usage: storeflow passwd USER < password-file (prints the BROKER_AUTH_FILE line)")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("passwd: read the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("passwd: empty password on stdin")
	}
	hash, err := broker.HashPassword(pw)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	fmt.Fprintf(stdout, "user %s %s\n", args[0], hash)
	return nil
}
