// Package csvdir owns the seed's tables as a directory of CSV files, one file
// per table with its header row: what DATA_DIR loads and `storeflow gen`
// writes. It reads every field with file, line and column for each problem,
// holds the records to the store's rules, and writes tables atomically.
package csvdir

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/storeflow/storeflow/store"
)

// The interchange format is one CSV file per table, header row first, in the
// seed's column order (PRODUCT.md §2). The two optional tables carry what
// only a generated shop knows: the ground truth and the redemption history.
const (
	customersFile   = "customer_info.csv"
	couponsFile     = "coupon_info.csv"
	productsFile    = "products.csv"
	productsFileOld = "product_info.csv" // the original demo's name, read when products.csv is absent
	linksFile       = "coupon_product.csv"
	preferencesFile = "customer_preferences.csv"
	historyFile     = "coupon_history.csv"
)

var (
	// The dep_ columns follow Departments and the type_ columns CouponTypes,
	// so column 2+k is Department[Departments[k]] and 7+k is Type[k].
	preferenceColumns = []string{
		"customer_id", "propensity",
		"dep_boys", "dep_girls", "dep_men", "dep_sports", "dep_women",
		"type_buy_all", "type_buy_more", "type_department", "type_just_discount",
		"discount_sensitivity", "price_tolerance",
	}
	historyColumns = []string{"customer_id", "coupon_id", "date", "used"}
)

// maxTableBytes bounds one table file, so that a wrong path (a disk image, a
// log) is refused at once instead of being read into memory.
const maxTableBytes = 1 << 30

// maxLoadErrors is how many problems Load spells out before it only counts:
// enough to fix a file in one pass, not so many that the first scroll away.
const maxLoadErrors = 10

var errTableTooLarge = errors.New("file is larger than 1 GiB, the limit for a table")

// Tables are what a catalog directory holds: the catalog's four tables and,
// for a generated shop, the two it alone knows.
type Tables struct {
	Catalog     *store.Catalog
	Preferences []store.Preferences  // customer_preferences.csv; nil: no such file
	History     []store.HistoryEntry // coupon_history.csv; nil: no such file
}

// Load reads a catalog directory: the four catalog tables
// (customer_info.csv, coupon_info.csv, products.csv or else product_info.csv,
// coupon_product.csv) are required; customer_preferences.csv gives the
// Preferences and coupon_history.csv the History, each nil when the file is
// absent.
//
// A directory with any problem is refused as a whole: the error lists each
// problem (up to ten, then a count) as file:line:column, where line is the
// physical line in the file (the header is line 1) and column the 1-based
// field. Fields are trimmed of surrounding spaces, so text is stored as CSV
// can carry it: no surrounding spaces, and \r\n within a field reads as \n.
func Load(dir string) (*Tables, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store: load %s: not a directory", dir)
	}
	l := &csvLoader{dir: dir}
	customers, customerIDs := l.customers()
	coupons, couponIDs := l.coupons()
	products, productIDs := l.products()
	links := l.links(couponIDs, productIDs)
	prefs := l.preferences(customerIDs)
	history := l.history(customerIDs, couponIDs)
	if err := l.problems(); err != nil {
		return nil, fmt.Errorf("store: load %s: %w", dir, err)
	}

	cat, err := store.NewCatalog(customers, coupons, products, links)
	if err != nil {
		return nil, fmt.Errorf("store: load %s: %w", dir, err)
	}
	return &Tables{Catalog: cat, Preferences: prefs, History: history}, nil
}

// csvLoader gathers the problems of every table, so that one run reports
// them all rather than the first.
type csvLoader struct {
	dir  string
	errs []error
	more int // problems past maxLoadErrors, counted only
}

// problems joins the problems reported, nil when there were none.
func (l *csvLoader) problems() error {
	if len(l.errs) == 0 {
		return nil
	}
	if l.more > 0 {
		return errors.Join(append(l.errs, fmt.Errorf("… and %d more", l.more))...)
	}
	return errors.Join(l.errs...)
}

func (l *csvLoader) report(err error) {
	if len(l.errs) < maxLoadErrors {
		l.errs = append(l.errs, err)
		return
	}
	l.more++
}

// csvIDs remembers on which line each id of a table was first seen, for the
// duplicate check within the table and the reference checks from others.
type csvIDs[K comparable] struct {
	file string // the table's file, as read
	noun string // what an id names: "customer", "coupon", "product"
	line map[K]int
	// whole is false when some rows went unread (a syntax error, an id
	// that did not parse, a missing file): a miss then proves nothing, and
	// reporting it would only bury the real problem.
	whole bool
}

func newCSVIDs[K comparable](file, noun string) *csvIDs[K] {
	return &csvIDs[K]{file: file, noun: noun, line: make(map[K]int), whole: true}
}

// add records the id in column col of r; ok is false when the id did not parse.
func (s *csvIDs[K]) add(r *csvRow, col int, id K, ok bool) {
	if !ok {
		s.whole = false
		return
	}
	if first, dup := s.line[id]; dup {
		r.invalid(col, fmt.Sprintf("duplicate, first on line %d", first))
		return
	}
	s.line[id], _ = r.cr.FieldPos(col)
}

// check reports the id in column col of r when the table does not hold it.
func (s *csvIDs[K]) check(r *csvRow, col int, id K, ok bool) {
	if !ok || !s.whole {
		return
	}
	if _, found := s.line[id]; !found {
		r.invalid(col, fmt.Sprintf("no such %s in %s", s.noun, s.file))
	}
}

func (l *csvLoader) customers() ([]store.Customer, *csvIDs[string]) {
	ids := newCSVIDs[string](customersFile, "customer")
	var out []store.Customer
	found, whole := l.readTable(customersFile, store.CustomerColumns, func(r *csvRow) {
		row := store.CustomerRow{
			CustomerID:                      r.text(0),
			Gender:                          r.text(1),
			Age:                             r.int(2),
			MeanBuyPrice:                    r.float(3),
			TotalCouponsUsed:                r.int(4),
			MeanDiscountReceived:            r.float(5),
			UniqueProductsBought:            r.int(6),
			UniqueProductsBoughtWithCoupons: r.int(7),
			TotalItemsBought:                r.int(8),
		}
		c, err := row.Customer()
		r.check(err)
		ids.add(r, 0, row.CustomerID, row.CustomerID != "")
		out = append(out, c)
	})
	l.require(found, customersFile)
	ids.whole = ids.whole && found && whole
	return out, ids
}

func (l *csvLoader) coupons() ([]store.Coupon, *csvIDs[int]) {
	ids := newCSVIDs[int](couponsFile, "coupon")
	var out []store.Coupon
	found, whole := l.readTable(couponsFile, store.CouponColumns, func(r *csvRow) {
		row := store.CouponRow{
			CouponID:          r.int(0),
			CouponType:        r.text(1),
			Department:        r.text(2),
			Discount:          r.int(3),
			HowMany:           r.int(4),
			StartDate:         r.text(5),
			EndDate:           r.text(6),
			ProductMeanPrice:  r.float(7),
			ProductsAvailable: r.int(8),
		}
		c, err := row.Coupon()
		r.check(err)
		if c.Type == store.DeptCoupon && c.HowMany == 1 {
			// The original demo's files write 1 for a department coupon,
			// which requires no count of items; the seed's rule, the
			// generated shop (and so the model) and the message say -1.
			c.HowMany = -1
		}
		ids.add(r, 0, row.CouponID, r.fine(0))
		out = append(out, c)
	})
	l.require(found, couponsFile)
	ids.whole = ids.whole && found && whole
	return out, ids
}

func (l *csvLoader) products() ([]store.Product, *csvIDs[int]) {
	ids := newCSVIDs[int](productsFile, "product")
	var out []store.Product
	row := func(r *csvRow) {
		row := store.ProductRow{
			ProductID:   r.int(0),
			Name:        r.text(1),
			Category:    r.text(2),
			Sizes:       r.text(3),
			Vendor:      r.text(4),
			Description: r.text(5),
			BuyPrice:    r.float(6),
			Department:  r.text(7),
		}
		p, err := row.Product()
		r.check(err)
		ids.add(r, 0, row.ProductID, r.fine(0))
		out = append(out, p)
	}
	found, whole := l.readTable(productsFile, store.ProductColumns, row)
	if !found {
		ids.file = productsFileOld
		found, whole = l.readTable(productsFileOld, store.ProductColumns, row)
	}
	if !found {
		l.report(fmt.Errorf("%s (or %s): required file is missing", productsFile, productsFileOld))
	}
	ids.whole = ids.whole && found && whole
	return out, ids
}

func (l *csvLoader) links(coupons, products *csvIDs[int]) []store.CouponProduct {
	var out []store.CouponProduct
	found, _ := l.readTable(linksFile, store.CouponProductColumns, func(r *csvRow) {
		cp := store.CouponProduct{CouponID: r.int(0), ProductID: r.int(1)}
		coupons.check(r, 0, cp.CouponID, r.fine(0))
		products.check(r, 1, cp.ProductID, r.fine(1))
		out = append(out, cp)
	})
	l.require(found, linksFile)
	return out
}

// preferences returns nil when the file is absent, and a non-nil slice
// (perhaps empty) when it is present.
func (l *csvLoader) preferences(customers *csvIDs[string]) []store.Preferences {
	ids := newCSVIDs[string](preferencesFile, "customer")
	out := []store.Preferences{}
	found, _ := l.readTable(preferencesFile, preferenceColumns, func(r *csvRow) {
		p := store.Preferences{CustomerID: r.text(0), Propensity: r.float(1)}
		for k, d := range store.Departments {
			p.Department[d] = r.float(2 + k)
		}
		for k := range p.Type {
			p.Type[k] = r.float(2 + len(store.Departments) + k)
		}
		p.DiscountSensitivity = r.float(11)
		p.PriceTolerance = r.float(12)
		customers.check(r, 0, p.CustomerID, true)
		ids.add(r, 0, p.CustomerID, true)
		out = append(out, p)
	})
	if !found {
		return nil
	}
	return out
}

// history returns nil when the file is absent, and a non-nil slice (perhaps
// empty) when it is present.
func (l *csvLoader) history(customers *csvIDs[string], coupons *csvIDs[int]) []store.HistoryEntry {
	out := []store.HistoryEntry{}
	found, _ := l.readTable(historyFile, historyColumns, historyRow(&out, customers, coupons))
	if !found {
		return nil
	}
	return out
}

// historyRow reads one coupon_history row into *out, its ids checked
// against the customers and coupons read.
func historyRow(out *[]store.HistoryEntry, customers *csvIDs[string], coupons *csvIDs[int]) func(*csvRow) {
	return func(r *csvRow) {
		o := store.HistoryEntry{CustomerID: r.text(0), CouponID: r.int(1), Day: r.day(2)}
		switch r.rec[3] {
		case "0":
		case "1":
			o.Used = true
		default:
			r.invalid(3, "must be 0 or 1")
		}
		customers.check(r, 0, o.CustomerID, true)
		coupons.check(r, 1, o.CouponID, r.fine(1))
		*out = append(*out, o)
	}
}

// ReadHistory reads one redemption history file in coupon_history.csv's
// form (the header customer_id,coupon_id,date,used once, then a row per
// offer): what a storeflow appends offers to while it runs. Only whole
// lines are read: a row still being appended is left for the next read.
// The ids are not checked against a catalog (the caller knows which one it
// uses); any other problem refuses the file, as Load does.
func ReadHistory(path string) ([]store.HistoryEntry, error) {
	f, err := openTable(path)
	if err != nil {
		return nil, fmt.Errorf("store: history: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(&capReader{r: f, left: maxTableBytes})
	if err != nil {
		return nil, fmt.Errorf("store: history %s: %w", path, err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	}
	file := filepath.Base(path)
	l := &csvLoader{dir: filepath.Dir(path)}
	anyCustomer, anyCoupon := newCSVIDs[string](file, "customer"), newCSVIDs[int](file, "coupon")
	anyCustomer.whole, anyCoupon.whole = false, false // no table to check against
	out := []store.HistoryEntry{}
	l.readRows(file, bytes.NewReader(data), historyColumns, historyRow(&out, anyCustomer, anyCoupon))
	if err := l.problems(); err != nil {
		return nil, fmt.Errorf("store: history %s: %w", path, err)
	}
	return out, nil
}

func (l *csvLoader) require(found bool, file string) {
	if !found {
		l.report(fmt.Errorf("%s: required file is missing", file))
	}
}

// readTable reads one table of l.dir, checks its header against columns and
// calls row for every record after it. found is false when the file does not
// exist; whole is false when some records never reached row (a bad header,
// a syntax error, a read error).
func (l *csvLoader) readTable(file string, columns []string, row func(*csvRow)) (found, whole bool) {
	f, err := openTable(filepath.Join(l.dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		return false, false
	}
	if err != nil {
		l.report(fmt.Errorf("%s: %w", file, err))
		return true, false
	}
	defer f.Close()
	return true, l.readRows(file, &capReader{r: f, left: maxTableBytes}, columns, row)
}

// readRows reads a table's records from in: see readTable. whole is false
// when some records never reached row.
func (l *csvLoader) readRows(file string, in io.Reader, columns []string, row func(*csvRow)) (whole bool) {
	br := bufio.NewReaderSize(in, 64<<10)
	const bom = "\ufeff" // spreadsheets put it in front of the header
	if b, _ := br.Peek(len(bom)); string(b) == bom {
		_, _ = br.Discard(len(bom))
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1 // the header is checked below, with a better message

	want := strings.Join(columns, ",")
	head, err := cr.Read()
	if err == io.EOF {
		l.report(fmt.Errorf("%s: empty file, want header %s", file, want))
		return false
	}
	if err != nil {
		l.readError(file, head, err)
		return false
	}
	if len(head) != len(columns) {
		l.report(fmt.Errorf("%s:1: header has %d columns, want %d: %s", file, len(head), len(columns), want))
		return false
	}
	for i, h := range head {
		if h = strings.TrimSpace(h); !strings.EqualFold(h, columns[i]) {
			l.report(fmt.Errorf("%s:1:%d: header column %q, want %q: header must be %s", file, i+1, h, columns[i], want))
			return false
		}
	}
	cr.FieldsPerRecord = len(columns)

	r := &csvRow{l: l, file: file, columns: columns, cr: cr}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return true
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok && errors.Is(pe.Err, csv.ErrFieldCount) {
			// The rest of the file is still well-formed CSV: go on, so
			// that every short or long row is reported in one pass.
			if len(rec) < len(columns) {
				l.report(fmt.Errorf("%s:%d:%d: missing field %s: row has %d fields, want %d",
					file, pe.StartLine, len(rec)+1, columns[len(rec)], len(rec), len(columns)))
			} else {
				l.report(fmt.Errorf("%s:%d:%d: extra field: row has %d fields, want %d",
					file, pe.StartLine, len(columns)+1, len(rec), len(columns)))
			}
			continue
		}
		if err != nil {
			l.readError(file, rec, err)
			return false
		}
		for i := range rec {
			rec[i] = csvText(rec[i])
		}
		r.rec, r.bad = rec, 0
		row(r)
	}
}

// readError reports an error that ends the reading of a file. After a
// syntax error the reader's idea of where records start is a guess, so
// nothing after it is read.
func (l *csvLoader) readError(file string, partial []string, err error) {
	pe, ok := errors.AsType[*csv.ParseError](err)
	if !ok {
		l.report(fmt.Errorf("%s: %w", file, err))
		return
	}
	// csv returns the fields read before the bad one, which gives the
	// column as a field index rather than a byte offset.
	msg := fmt.Sprintf("%s:%d:%d: %v", file, pe.Line, len(partial)+1, pe.Err)
	if pe.StartLine != pe.Line {
		msg += fmt.Sprintf(" (the row starts on line %d)", pe.StartLine)
	}
	l.report(errors.New(msg))
}

// csvText trims a field and turns \r\n inside it into \n, as csv does with
// every line break it reads: a field that kept \r\n would read back
// differently after a write.
func csvText(s string) string {
	s = strings.TrimSpace(s)
	for strings.Contains(s, "\r\n") {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	return s
}

// openTable opens a regular file no larger than maxTableBytes.
func openTable(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = errors.New("not a regular file")
	case fi.Size() > maxTableBytes:
		err = errTableTooLarge
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// capReader fails once more than left bytes have been read: the size check
// at open cannot see a file that grows while it is read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= int64(n); c.left < 0 {
		return n, errTableTooLarge
	}
	return n, err
}

// csvRow is the record being read, with parsers that report a bad field as
// file:line:column and remember it, so that checks across fields run only on
// fields that parsed.
type csvRow struct {
	l       *csvLoader
	file    string
	columns []string
	cr      *csv.Reader
	rec     []string
	bad     uint64 // bit i: field i failed
}

// invalid reports field col (0-based) as file:line:column: name "value": why.
func (r *csvRow) invalid(col int, why string) {
	r.bad |= 1 << col
	line, _ := r.cr.FieldPos(col)
	fe := &store.FieldError{Field: r.columns[col], Value: r.rec[col], Reason: why}
	r.l.report(fmt.Errorf("%s:%d:%d: %w", r.file, line, col+1, fe))
}

// check reports the rules a record broke, each at its field as the file
// spells it. A field that did not parse is reported already.
func (r *csvRow) check(err error) {
	for _, fe := range store.FieldErrors(err) {
		if col := slices.Index(r.columns, fe.Field); col >= 0 && r.fine(col) {
			r.invalid(col, fe.Reason)
		}
	}
}

// fine reports whether field col parsed.
func (r *csvRow) fine(col int) bool { return r.bad&(1<<col) == 0 }

func (r *csvRow) text(col int) string { return r.rec[col] }

func (r *csvRow) int(col int) int {
	v, err := strconv.Atoi(r.rec[col])
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			r.invalid(col, "out of range")
		} else {
			r.invalid(col, "not a whole number")
		}
	}
	return v
}

func (r *csvRow) float(col int) float64 {
	v, err := strconv.ParseFloat(r.rec[col], 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		r.invalid(col, "out of range")
	case err != nil:
		r.invalid(col, "not a number")
	case math.IsNaN(v) || math.IsInf(v, 0):
		r.invalid(col, "not a finite number")
	}
	return v
}

func (r *csvRow) day(col int) store.Day {
	d, err := store.ParseDay(r.rec[col])
	if err != nil {
		r.invalid(col, "not a YYYY-MM-DD date")
	}
	return d
}

// Write writes t's tables into dir, created if missing, in the formats Load
// reads: the four catalog tables always, customer_preferences.csv when t has
// Preferences and coupon_history.csv when it has a History (a stale one is
// removed otherwise, so that Load gives back t). The same tables always give
// the same bytes. Each table is written to a temporary file and renamed into
// place, so that neither a reader nor a crash ever sees half a table.
func Write(dir string, t *Tables) error {
	if t == nil || t.Catalog == nil {
		return errors.New("store: write: no catalog")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	err := writeTables(dir, t)
	if err != nil {
		return fmt.Errorf("store: write %s: %w", dir, err)
	}
	return nil
}

func writeTables(dir string, w *Tables) error {
	c := w.Catalog
	customers := c.Customers()
	err := writeTable(dir, customersFile, store.CustomerColumns, len(customers), func(i int, rec []string) {
		row := customers[i].Row()
		rec[0] = row.CustomerID
		rec[1] = row.Gender
		rec[2] = strconv.Itoa(row.Age)
		rec[3] = formatFloat(row.MeanBuyPrice)
		rec[4] = strconv.Itoa(row.TotalCouponsUsed)
		rec[5] = formatFloat(row.MeanDiscountReceived)
		rec[6] = strconv.Itoa(row.UniqueProductsBought)
		rec[7] = strconv.Itoa(row.UniqueProductsBoughtWithCoupons)
		rec[8] = strconv.Itoa(row.TotalItemsBought)
	})
	if err != nil {
		return err
	}
	coupons := c.Coupons()
	err = writeTable(dir, couponsFile, store.CouponColumns, len(coupons), func(i int, rec []string) {
		row := coupons[i].Row()
		rec[0] = strconv.Itoa(row.CouponID)
		rec[1] = row.CouponType
		rec[2] = row.Department
		rec[3] = strconv.Itoa(row.Discount)
		rec[4] = strconv.Itoa(row.HowMany)
		rec[5] = row.StartDate
		rec[6] = row.EndDate
		rec[7] = formatFloat(row.ProductMeanPrice)
		rec[8] = strconv.Itoa(row.ProductsAvailable)
	})
	if err != nil {
		return err
	}
	products := c.Products()
	err = writeTable(dir, productsFile, store.ProductColumns, len(products), func(i int, rec []string) {
		row := products[i].Row()
		rec[0] = strconv.Itoa(row.ProductID)
		rec[1] = row.Name
		rec[2] = row.Category
		rec[3] = row.Sizes
		rec[4] = row.Vendor
		rec[5] = row.Description
		rec[6] = formatFloat(row.BuyPrice)
		rec[7] = row.Department
	})
	if err != nil {
		return err
	}
	links := c.Links()
	err = writeTable(dir, linksFile, store.CouponProductColumns, len(links), func(i int, rec []string) {
		rec[0] = strconv.Itoa(links[i].CouponID)
		rec[1] = strconv.Itoa(links[i].ProductID)
	})
	if err != nil {
		return err
	}

	if w.Preferences == nil {
		err = removeTable(dir, preferencesFile)
	} else {
		prefs := w.Preferences
		err = writeTable(dir, preferencesFile, preferenceColumns, len(prefs), func(i int, rec []string) {
			p := &prefs[i]
			rec[0] = p.CustomerID
			rec[1] = formatFloat(p.Propensity)
			for k, d := range store.Departments {
				rec[2+k] = formatFloat(p.Department[d])
			}
			for k, x := range p.Type {
				rec[2+len(store.Departments)+k] = formatFloat(x)
			}
			rec[11] = formatFloat(p.DiscountSensitivity)
			rec[12] = formatFloat(p.PriceTolerance)
		})
	}
	if err != nil {
		return err
	}

	if w.History == nil {
		return removeTable(dir, historyFile)
	}
	return writeTable(dir, historyFile, historyColumns, len(w.History), func(i int, rec []string) {
		historyRecord(&w.History[i], rec)
	})
}

// writeTable writes the header and n rows, each filled in by row, to a
// temporary file beside file and renames it into place.
func writeTable(dir, file string, columns []string, n int, row func(i int, rec []string)) (err error) {
	f, err := os.CreateTemp(dir, "."+file+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	cw := csv.NewWriter(f)
	_ = cw.Write(columns) // errors stick in cw; checked below
	rec := make([]string, len(columns))
	for i := range n {
		row(i, rec)
		_ = cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// Sync before the rename: without it a crash can leave the new name
	// pointing at a file whose data never reached the disk.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, file)); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

func removeTable(dir, file string) error {
	if err := os.Remove(filepath.Join(dir, file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// formatFloat writes the shortest decimal that reads back as x exactly.
func formatFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
