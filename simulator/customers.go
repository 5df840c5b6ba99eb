package simulator

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// LoadCustomerList reads the customer list (CUSTOMERS_LIST_FILE): CSV with a
// header row. The column named customer_id or id (in any case) holds the id,
// else the first column does; other columns are ignored, so customer_info.csv
// itself will do. An empty or duplicate id, or no rows at all, is an error that
// names the file and line.
func LoadCustomerList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("simulator: customer list: %w", err)
	}
	defer f.Close()

	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1 // only the id column matters
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("simulator: customer list %s: empty file, want a header row", path)
	}
	if err != nil {
		return nil, fmt.Errorf("simulator: customer list %s: %w", path, err)
	}
	col, name := idColumn(header)

	var ids []string
	seen := make(map[string]int) // id → line
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("simulator: customer list %s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		if col >= len(rec) {
			return nil, fmt.Errorf("simulator: %s:%d: no %s column: the row has %d fields", path, line, name, len(rec))
		}
		id := strings.TrimSpace(rec[col])
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("simulator: %s:%d: %w", path, line, err)
		}
		if first, dup := seen[id]; dup {
			return nil, fmt.Errorf("simulator: %s:%d: duplicate customer id %q (first on line %d)", path, line, id, first)
		}
		id = strings.Clone(id) // do not keep the whole row alive
		seen[id] = line
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("simulator: customer list %s: no customers after the header", path)
	}
	return ids, nil
}

// idColumn finds the id column in the header: customer_id, else id, else the first.
func idColumn(header []string) (int, string) {
	for _, want := range [...]string{"customer_id", "id"} {
		for i, h := range header {
			h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
			if strings.EqualFold(h, want) {
				return i, strings.Clone(h)
			}
		}
	}
	first := ""
	if len(header) > 0 {
		first = strings.TrimSpace(strings.TrimPrefix(header[0], "\ufeff"))
	}
	return 0, fmt.Sprintf("%q (first)", first)
}
