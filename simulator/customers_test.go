package simulator

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadCustomerList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    []string
	}{
		{"customer_id_first", "customer_id,gender,age\n1,M,30\n2,F,41\n", []string{"1", "2"}},
		{"customer_id_later", "gender,Customer_ID\nM,7\nF,8\n", []string{"7", "8"}},
		{"id_column", "name,ID\nann,a1\nbob,b2\n", []string{"a1", "b2"}},
		{"customer_id_wins_over_id", "id,customer_id\nx,1\ny,2\n", []string{"1", "2"}},
		{"no_id_column_takes_first", "who,age\n997,30\n998,31\n", []string{"997", "998"}},
		{"single_column_no_newline", "customer_id\n5", []string{"5"}},
		{"bom_crlf_blank_lines_spaces", "\ufeffcustomer_id,gender\r\n 12 ,M\r\n\r\n13,F\r\n", []string{"12", "13"}},
		{"quoted", "\"customer_id\",\"note\"\n\"1\",\"a, b\"\n\"2\",\"multi\nline\"\n", []string{"1", "2"}},
		{"ragged_rows", "customer_id,a,b\n1\n2,x,y,z\n", []string{"1", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadCustomerList(writeFile(t, "customers.csv", tc.content))
			if err != nil {
				t.Fatalf("LoadCustomerList: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("LoadCustomerList = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadCustomerListErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    []string // substrings of the error, after the file name
	}{
		{"empty_file", "", []string{"empty file"}},
		{"header_only", "customer_id,gender\n", []string{"no customers"}},
		{"empty_id", "customer_id,gender\n1,M\n,F\n", []string{"customers.csv:3:", "empty customer id"}},
		{"blank_id", "customer_id,gender\n1,M\n2,F\n   ,F\n", []string{"customers.csv:4:", "empty customer id"}},
		{"duplicate_id", "customer_id\n1\n2\n1\n", []string{"customers.csv:4:", `duplicate customer id "1"`, "first on line 2"}},
		{"missing_column", "gender,customer_id\nM,1\nF\n", []string{"customers.csv:3:", "customer_id"}},
		{"id_too_long", "id\n" + strings.Repeat("9", 65) + "\n", []string{"customers.csv:2:", "64 bytes"}},
		{"bad_quote", "customer_id\n1\n\"2\n", []string{"customers.csv", "line 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "customers.csv", tc.content)
			ids, err := LoadCustomerList(path)
			if err == nil {
				t.Fatalf("LoadCustomerList = %q, want an error", ids)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
		})
	}

	t.Run("missing_file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.csv")
		_, err := LoadCustomerList(path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Fatalf("LoadCustomerList(missing) = %v, want a not-exist error naming %s", err, path)
		}
	})
}
