package csvdir

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// csvTables lists every table file Load reads, in the fuzz target's order.
var csvTables = []string{customersFile, couponsFile, productsFile, linksFile, preferencesFile, historyFile}

// csvValid is a small consistent directory, every table present. Line numbers
// in the bad-input cases below refer to these lines (the header is line 1).
var csvValid = map[string]string{
	customersFile: `customer_id,gender,age,mean_buy_price,total_coupons_used,mean_discount_received,unique_products_bought,unique_products_bought_with_coupons,total_items_bought
1,F,30,20.5,3,12.5,10,2,14
2,M,61,35,0,0,4,0,4
`,
	couponsFile: `coupon_id,coupon_type,department,discount,how_many_products_required,start_date,end_date,product_mean_price,products_available
1,just_discount,Women,10,1,2024-05-01,2024-05-10,6,2
2,buy_all,Women,20,2,2024-05-03,2024-05-03,6,2
3,department,Men,5,-1,2024-04-20,2024-06-01,9,1
`,
	productsFile: `product_id,name,category,sizes,vendor,description,buy_price,department
10,Dress,Dresses,S-XL,TinyCottons,A dress.,5,Women
11,Skirt,Skirts,S-XL,TinyCottons,A skirt.,7,Women
20,Shirt,Shirts,S-XL,Fenworth,A shirt.,9,Men
`,
	linksFile: `coupon_id,product_id
1,10
1,11
2,10
2,11
3,20
`,
	preferencesFile: `customer_id,propensity,dep_boys,dep_girls,dep_men,dep_sports,dep_women,type_buy_all,type_buy_more,type_department,type_just_discount,discount_sensitivity,price_tolerance
1,-1.5,0.1,0.2,-0.3,0,0.6,-0.3,-0.1,0.2,0.3,0.4,0.8
2,-2,0,0,0.6,0.1,-1.2,-0.3,-0.1,0.2,0.3,0.3,0.9
`,
	historyFile: `customer_id,coupon_id,date,used
1,1,2024-05-02,1
2,3,2024-05-02,0
`,
}

// csvWriteFiles writes files (name → content) into dir.
func csvWriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// csvValidDir returns a new directory holding csvValid.
func csvValidDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	csvWriteFiles(t, dir, csvValid)
	return dir
}

// csvSameRows fails the test at the first row where got and want differ.
func csvSameRows[T comparable](t *testing.T, table string, got, want []T) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s row %d:\n got %+v\nwant %+v", table, i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", table, len(got), len(want))
	}
}

// csvSameTables fails the test unless got holds the same tables as want.
func csvSameTables(t *testing.T, got, want *Tables) {
	t.Helper()
	csvSameRows(t, "customers", got.Catalog.Customers(), want.Catalog.Customers())
	csvSameRows(t, "coupons", got.Catalog.Coupons(), want.Catalog.Coupons())
	csvSameRows(t, "products", got.Catalog.Products(), want.Catalog.Products())
	csvSameRows(t, "links", got.Catalog.Links(), want.Catalog.Links())
	if (got.Preferences == nil) != (want.Preferences == nil) {
		t.Fatalf("Preferences nil = %v, want %v", got.Preferences == nil, want.Preferences == nil)
	}
	csvSameRows(t, "preferences", got.Preferences, want.Preferences)
	if (got.History == nil) != (want.History == nil) {
		t.Fatalf("History nil = %v, want %v", got.History == nil, want.History == nil)
	}
	csvSameRows(t, "history", got.History, want.History)
}

// csvAwkwardTables are small hand-made tables whose text needs CSV quoting
// and whose numbers need every digit.
func csvAwkwardTables(t *testing.T) *Tables {
	t.Helper()
	customers := []store.Customer{
		{ID: "c-1", Gender: "F", Age: 18, MeanBuyPrice: 0.1 + 0.2, TotalCouponsUsed: 3, MeanDiscountReceived: 12.345678901234567, UniqueProductsBought: 10, UniqueProductsBoughtWithCoupons: 2, TotalItemsBought: 14},
		{ID: "id, with \"comma\"", Gender: "M", Age: 90, MeanBuyPrice: 1e-7, TotalItemsBought: 1},
	}
	coupons := []store.Coupon{
		{ID: 7, Type: store.DeptCoupon, Department: store.Sports, Discount: 5, HowMany: -1, Start: -3, End: 100000, ProductMeanPrice: 1.0 / 3, ProductsAvailable: 1},
		{ID: -2, Type: store.BuyMore, Department: store.Boys, Discount: 40, HowMany: 3, Start: 19800, End: 19800, ProductMeanPrice: 12},
	}
	products := []store.Product{
		{ID: 3, Name: "Café, \"deluxe\" ☕", Category: "#not a comment", Sizes: `\.`, Vendor: "", Description: "two\nlines", BuyPrice: 123456.789, Department: store.Sports},
		{ID: 1, Name: "plain", Category: "Caps", Sizes: "One size", Vendor: "V", Description: "d", BuyPrice: 0, Department: store.Boys},
	}
	links := []store.CouponProduct{{CouponID: 7, ProductID: 3}, {CouponID: -2, ProductID: 1}, {CouponID: 7, ProductID: 1}, {CouponID: 7, ProductID: 3}}
	cat, err := store.NewCatalog(customers, coupons, products, links)
	if err != nil {
		t.Fatal(err)
	}
	prefs := []store.Preferences{
		{CustomerID: "id, with \"comma\"", Propensity: -1.25, Department: [6]float64{0, 0.1, -0.2, 0.3, -0.4, 0.5}, Type: [4]float64{1, 2, 3, 4}, DiscountSensitivity: 0.3, PriceTolerance: 1e-9},
		{CustomerID: "c-1", Propensity: 2.5e10},
	}
	history := []store.HistoryEntry{
		{CustomerID: "c-1", CouponID: 7, Day: -3, Used: true},
		{CustomerID: "id, with \"comma\"", CouponID: -2, Day: 19800},
		{CustomerID: "c-1", CouponID: 7, Day: 100000},
	}
	return &Tables{Catalog: cat, Preferences: prefs, History: history}
}

func TestCSVRoundTrip(t *testing.T) {
	ref := time.Date(2024, 5, 15, 12, 0, 0, 0, time.UTC)
	generated := func(cfg world.Config) func(t *testing.T) *Tables {
		return func(t *testing.T) *Tables {
			cfg.Reference = ref
			cat, err := world.GenerateCatalog(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return &Tables{Catalog: cat}
		}
	}
	tests := []struct {
		name   string
		tables func(t *testing.T) *Tables
	}{
		{"generated small", generated(world.Config{Seed: 7, Customers: 40, Products: 60, Coupons: 30})},
		{"generated reference sizes", generated(world.Config{Seed: 1})},
		{"awkward text with truth and history", csvAwkwardTables},
		{"empty truth and history", func(t *testing.T) *Tables {
			w := csvAwkwardTables(t)
			return &Tables{Catalog: w.Catalog, Preferences: []store.Preferences{}, History: []store.HistoryEntry{}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.tables(t)
			dir := t.TempDir()
			got := csvWriteLoad(t, dir, want)
			csvSameTables(t, got, want)

			// same tables, same bytes; and no temporary file left behind.
			again := filepath.Join(t.TempDir(), "new", "dir")
			if err := Write(again, got); err != nil {
				t.Fatalf("Write again: %v", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
				a, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(again, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs between two writes of the same tables", e.Name())
				}
			}
			wantNames := []string{couponsFile, linksFile, customersFile, productsFile}
			if want.Preferences != nil {
				wantNames = append(wantNames, historyFile, preferencesFile)
			}
			slices.Sort(wantNames)
			if !slices.Equal(names, wantNames) {
				t.Errorf("files %q, want %q", names, wantNames)
			}
		})
	}
}

func TestWriteFormat(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, csvAwkwardTables(t)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		couponsFile: csvValid[couponsFile][:strings.IndexByte(csvValid[couponsFile], '\n')+1] +
			"-2,buy_more,Boys,40,3,2024-03-18,2024-03-18,12,0\n" +
			"7,department,Sports,5,-1,1969-12-29,2243-10-17,0.3333333333333333,1\n",
		productsFile: csvValid[productsFile][:strings.IndexByte(csvValid[productsFile], '\n')+1] +
			"3,\"Café, \"\"deluxe\"\" ☕\",#not a comment,\"\\.\",,\"two\nlines\",123456.789,Sports\n" +
			"1,plain,Caps,One size,V,d,0,Boys\n",
		linksFile:   "coupon_id,product_id\n-2,1\n7,3\n7,1\n7,3\n",
		historyFile: "customer_id,coupon_id,date,used\nc-1,7,1969-12-29,1\n\"id, with \"\"comma\"\"\",-2,2024-03-18,0\nc-1,7,2243-10-17,0\n",
	}
	for file, w := range want {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != w {
			t.Errorf("%s:\n%s\nwant:\n%s", file, b, w)
		}
	}
}

// TestLoadOriginalDemo reads files in the original demo's shape, written
// by hand: product_info.csv instead of products.csv, the "Sport" spelling, a
// spreadsheet's BOM and CRLF, headers in another case, spaces around fields.
func TestLoadOriginalDemo(t *testing.T) {
	files := map[string]string{
		customersFile: "\ufeffCUSTOMER_ID, Gender ,Age,Mean_Buy_Price,total_coupons_used,mean_discount_received,unique_products_bought,unique_products_bought_with_coupons,total_items_bought\r\n" +
			"1000, F , 42 , 19.9 ,3,12.5,10,2,14\r\n" +
			"1001,M,61,35,0,0,4,0,4\r\n",
		couponsFile: "coupon_id,coupon_type,department,discount,how_many_products_required,start_date,end_date,product_mean_price,products_available\n" +
			"1,just_discount,Sport,10,1,2024-05-01,2024-05-10,24.5,1\n" +
			"2, department ,Sport,5,-1,2024-04-20,2024-06-01,24.5,2\n",
		productsFileOld: "product_id,name,category,sizes,vendor,description,buy_price,department\n" +
			`1,"ORBENFJELL - Navy blue Yoga mats, for All",Yoga mats,One size,Kestrel Sportswear, "A mat, ""non-slip"".",24.5,Sport` + "\n" +
			"2,QUINVERA - Teal Caps for Boys,Caps,One size,Meadowlark Kids,A cap.,24.5,Sport\n",
		linksFile: "coupon_id,product_id\n1,1\n2,1\n2,2\n",
	}
	dir := t.TempDir()
	csvWriteFiles(t, dir, files)
	w, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if w.Preferences != nil || w.History != nil {
		t.Errorf("Preferences = %v, History = %v, want both nil", w.Preferences, w.History)
	}
	want := &Tables{}
	want.Catalog, err = store.NewCatalog(
		[]store.Customer{
			{ID: "1000", Gender: "F", Age: 42, MeanBuyPrice: 19.9, TotalCouponsUsed: 3, MeanDiscountReceived: 12.5, UniqueProductsBought: 10, UniqueProductsBoughtWithCoupons: 2, TotalItemsBought: 14},
			{ID: "1001", Gender: "M", Age: 61, MeanBuyPrice: 35, UniqueProductsBought: 4, TotalItemsBought: 4},
		},
		[]store.Coupon{
			{ID: 1, Type: store.JustDiscount, Department: store.Sports, Discount: 10, HowMany: 1, Start: csvDay(t, "2024-05-01"), End: csvDay(t, "2024-05-10"), ProductMeanPrice: 24.5, ProductsAvailable: 1},
			{ID: 2, Type: store.DeptCoupon, Department: store.Sports, Discount: 5, HowMany: -1, Start: csvDay(t, "2024-04-20"), End: csvDay(t, "2024-06-01"), ProductMeanPrice: 24.5, ProductsAvailable: 2},
		},
		[]store.Product{
			{ID: 1, Name: "ORBENFJELL - Navy blue Yoga mats, for All", Category: "Yoga mats", Sizes: "One size", Vendor: "Kestrel Sportswear", Description: `A mat, "non-slip".`, BuyPrice: 24.5, Department: store.Sports},
			{ID: 2, Name: "QUINVERA - Teal Caps for Boys", Category: "Caps", Sizes: "One size", Vendor: "Meadowlark Kids", Description: "A cap.", BuyPrice: 24.5, Department: store.Sports},
		},
		[]store.CouponProduct{{CouponID: 1, ProductID: 1}, {CouponID: 2, ProductID: 1}, {CouponID: 2, ProductID: 2}},
	)
	if err != nil {
		t.Fatal(err)
	}
	csvSameTables(t, w, want)

	// Written back, the table takes the new name and the new spelling.
	out := t.TempDir()
	if err := Write(out, w); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, productsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), ",24.5,Sports\n") || strings.Contains(string(b), ",Sport\n") {
		t.Errorf("products.csv:\n%s\nwant the department spelled Sports", b)
	}
}

// The original demo's files write how_many_products_required 1 for a
// department coupon (26 of them); it is read as the -1 of the seed's rule, so
// the published coupon says -1 and the model sees what it was trained on.
func TestLoadDepartmentCouponCount(t *testing.T) {
	dir := csvValidDir(t)
	csvWriteFiles(t, dir, map[string]string{couponsFile: "coupon_id,coupon_type,department,discount,how_many_products_required,start_date,end_date,product_mean_price,products_available\n" +
		"1,department,Sport,12,1,2011-03-01,2011-03-20,24.5,600\n" +
		"2,department,Sport,12,-1,2011-03-01,2011-03-20,24.5,600\n" +
		"3,just_discount,Sport,12,1,2011-03-01,2011-03-20,24.5,1\n",
		linksFile: "coupon_id,product_id\n"})
	w, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []int
	for _, c := range w.Catalog.Coupons() {
		got = append(got, c.HowMany)
	}
	if want := []int{-1, -1, 1}; !slices.Equal(got, want) {
		t.Errorf("how_many of a department coupon written 1, -1 and a just_discount written 1: %v, want %v", got, want)
	}
}

func csvDay(t *testing.T, s string) store.Day {
	t.Helper()
	d, err := store.ParseDay(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLoadProducts checks which products table is read.
func TestLoadProducts(t *testing.T) {
	tests := []struct {
		name       string
		products   string // content of products.csv; "" for none
		oldProduct string // content of product_info.csv; "" for none
		wantErr    string
	}{
		{name: "products.csv", products: csvValid[productsFile]},
		{name: "product_info.csv when products.csv is absent", oldProduct: csvValid[productsFile]},
		{name: "products.csv wins over product_info.csv", products: csvValid[productsFile], oldProduct: "garbage"},
		{name: "errors name the file read", oldProduct: strings.Replace(csvValid[productsFile], ",5,", ",x,", 1),
			wantErr: `product_info.csv:2:7: buy_price "x": not a number`},
		{name: "neither", wantErr: "products.csv (or product_info.csv): required file is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := csvValidDir(t)
			if err := os.Remove(filepath.Join(dir, productsFile)); err != nil {
				t.Fatal(err)
			}
			if tt.products != "" {
				csvWriteFiles(t, dir, map[string]string{productsFile: tt.products})
			}
			if tt.oldProduct != "" {
				csvWriteFiles(t, dir, map[string]string{productsFileOld: tt.oldProduct})
			}
			w, err := Load(dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if _, _, n, _ := w.Catalog.Sizes(); n != 3 {
					t.Errorf("%d products, want 3", n)
				}
				return
			}
			if w != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load = %v, %v; want an error containing %q", w, err, tt.wantErr)
			}
		})
	}
}

// csvEdit replaces physical line n (1-based) of content with text.
func csvEdit(t *testing.T, content string, n int, text string) string {
	t.Helper()
	lines := strings.Split(content, "\n")
	if n < 1 || n > len(lines) {
		t.Fatalf("line %d is not in the fixture", n)
	}
	lines[n-1] = text
	return strings.Join(lines, "\n")
}

func TestLoadRefuses(t *testing.T) {
	custHeader := strings.Join(store.CustomerColumns, ",")
	tests := []struct {
		name    string
		file    string
		line    int    // replace this line of csvValid[file] with text...
		text    string //
		content string // ...or, when set, the whole file with content
		want    []string
	}{
		{name: "not a whole number", file: couponsFile, line: 3, text: "2,buy_all,Women,abc,2,2024-05-03,2024-05-03,6,2",
			want: []string{`coupon_info.csv:3:4: discount "abc": not a whole number`}},
		{name: "fraction for a whole number", file: customersFile, line: 2, text: "1,F,30.5,20.5,3,12.5,10,2,14",
			want: []string{`customer_info.csv:2:3: age "30.5": not a whole number`}},
		{name: "whole number out of range", file: productsFile, line: 2, text: "99999999999999999999,Dress,Dresses,S-XL,TinyCottons,A dress.,5,Women",
			want: []string{`products.csv:2:1: product_id "99999999999999999999": out of range`}},
		{name: "not a number", file: customersFile, line: 2, text: "1,F,30,20.5.1,3,12.5,10,2,14",
			want: []string{`customer_info.csv:2:4: mean_buy_price "20.5.1": not a number`}},
		{name: "empty number", file: couponsFile, line: 4, text: "3,department,Men,5,-1,2024-04-20,2024-06-01,,1",
			want: []string{`coupon_info.csv:4:8: product_mean_price "": not a number`}},
		{name: "NaN", file: customersFile, line: 3, text: "2,M,61,35,0,NaN,4,0,4",
			want: []string{`customer_info.csv:3:6: mean_discount_received "NaN": not a finite number`}},
		{name: "infinity", file: preferencesFile, line: 2, text: "1,+Inf,0.1,0.2,-0.3,0,0.6,-0.3,-0.1,0.2,0.3,0.4,0.8",
			want: []string{`customer_preferences.csv:2:2: propensity "+Inf": not a finite number`}},
		{name: "float out of range", file: preferencesFile, line: 3, text: "2,-2,0,0,0.6,0.1,-1.2,-0.3,-0.1,0.2,0.3,0.3,1e999",
			want: []string{`customer_preferences.csv:3:13: price_tolerance "1e999": out of range`}},
		{name: "negative age", file: customersFile, line: 3, text: "2,M,-3,35,0,0,4,0,4",
			want: []string{`customer_info.csv:3:3: age "-3": must not be negative`}},
		{name: "negative price", file: productsFile, line: 4, text: "20,Shirt,Shirts,S-XL,Fenworth,A shirt.,-9,Men",
			want: []string{`products.csv:4:7: buy_price "-9": must not be negative`}},
		{name: "-1 products on a buy_all coupon", file: couponsFile, line: 3, text: "2,buy_all,Women,20,-1,2024-05-03,2024-05-03,6,2",
			want: []string{`coupon_info.csv:3:5: how_many_products_required "-1": must not be negative`}},
		{name: "-2 products on a department coupon", file: couponsFile, line: 4, text: "3,department,Men,5,-2,2024-04-20,2024-06-01,9,1",
			want: []string{`coupon_info.csv:4:5: how_many_products_required "-2": must not be negative`}},
		{name: "gender", file: customersFile, line: 2, text: "1,X,30,20.5,3,12.5,10,2,14",
			want: []string{`customer_info.csv:2:2: gender "X": must be M or F`}},
		{name: "department", file: productsFile, line: 3, text: "11,Skirt,Skirts,S-XL,TinyCottons,A skirt.,7,Toys",
			want: []string{`products.csv:3:8: department "Toys": not a department`}},
		{name: "coupon type", file: couponsFile, line: 2, text: "1,bogof,Women,10,1,2024-05-01,2024-05-10,6,2",
			want: []string{`coupon_info.csv:2:2: coupon_type "bogof": not a coupon type`}},
		{name: "date format", file: couponsFile, line: 2, text: "1,just_discount,Women,10,1,2024/05/01,2024-05-10,6,2",
			want: []string{`coupon_info.csv:2:6: start_date "2024/05/01": not a YYYY-MM-DD date`}},
		{name: "impossible date", file: historyFile, line: 3, text: "2,3,2024-02-30,0",
			want: []string{`coupon_history.csv:3:3: date "2024-02-30": not a YYYY-MM-DD date`}},
		{name: "end before start", file: couponsFile, line: 2, text: "1,just_discount,Women,10,1,2024-05-01,2024-04-01,6,2",
			want: []string{`coupon_info.csv:2:7: end_date "2024-04-01": before start_date 2024-05-01`}},
		{name: "empty customer id", file: customersFile, line: 3, text: "  ,M,61,35,0,0,4,0,4",
			want: []string{`customer_info.csv:3:1: customer_id "": must not be empty`}},
		{name: "duplicate customer", file: customersFile, line: 4, text: "1,M,61,35,0,0,4,0,4",
			want: []string{`customer_info.csv:4:1: customer_id "1": duplicate, first on line 2`}},
		{name: "duplicate coupon", file: couponsFile, line: 5, text: " 1 ,department,Men,5,-1,2024-04-20,2024-06-01,9,1",
			want: []string{`coupon_info.csv:5:1: coupon_id "1": duplicate, first on line 2`}},
		{name: "duplicate product", file: productsFile, line: 5, text: "11,Shirt,Shirts,S-XL,Fenworth,A shirt.,9,Men",
			want: []string{`products.csv:5:1: product_id "11": duplicate, first on line 3`}},
		{name: "link to an unknown coupon", file: linksFile, line: 3, text: "9,11",
			want: []string{`coupon_product.csv:3:1: coupon_id "9": no such coupon in coupon_info.csv`}},
		{name: "link to an unknown product", file: linksFile, line: 4, text: "2,12",
			want: []string{`coupon_product.csv:4:2: product_id "12": no such product in products.csv`}},
		{name: "history of an unknown customer", file: historyFile, line: 2, text: "7,1,2024-05-02,1",
			want: []string{`coupon_history.csv:2:1: customer_id "7": no such customer in customer_info.csv`}},
		{name: "history of an unknown coupon", file: historyFile, line: 3, text: "2,4,2024-05-02,0",
			want: []string{`coupon_history.csv:3:2: coupon_id "4": no such coupon in coupon_info.csv`}},
		{name: "used", file: historyFile, line: 3, text: "2,3,2024-05-02,yes",
			want: []string{`coupon_history.csv:3:4: used "yes": must be 0 or 1`}},
		{name: "preferences of an unknown customer", file: preferencesFile, line: 3, text: "3,-2,0,0,0.6,0.1,-1.2,-0.3,-0.1,0.2,0.3,0.3,0.9",
			want: []string{`customer_preferences.csv:3:1: customer_id "3": no such customer in customer_info.csv`}},
		{name: "preferences twice", file: preferencesFile, line: 3, text: "1,-2,0,0,0.6,0.1,-1.2,-0.3,-0.1,0.2,0.3,0.3,0.9",
			want: []string{`customer_preferences.csv:3:1: customer_id "1": duplicate, first on line 2`}},
		{name: "header missing a column", file: customersFile, line: 1, text: strings.TrimSuffix(custHeader, ",total_items_bought"),
			want: []string{"customer_info.csv:1: header has 8 columns, want 9: " + custHeader}},
		{name: "header with an extra column", file: customersFile, line: 1, text: custHeader + ",email",
			want: []string{"customer_info.csv:1: header has 10 columns, want 9: " + custHeader}},
		{name: "header with a wrong name", file: couponsFile, line: 1, text: "coupon_id,coupon_type,dept,discount,how_many_products_required,start_date,end_date,product_mean_price,products_available",
			want: []string{`coupon_info.csv:1:3: header column "dept", want "department": header must be coupon_id,coupon_type,department,`}},
		{name: "row missing a field", file: linksFile, line: 3, text: "1",
			want: []string{"coupon_product.csv:3:2: missing field product_id: row has 1 fields, want 2"}},
		{name: "row with an extra field", file: linksFile, line: 3, text: "1,11,3",
			want: []string{"coupon_product.csv:3:3: extra field: row has 3 fields, want 2"}},
		{name: "bare quote", file: productsFile, line: 3, text: `11,Sk"irt,Skirts,S-XL,TinyCottons,A skirt.,7,Women`,
			want: []string{`products.csv:3:2: bare " in non-quoted-field`}},
		{name: "quote never closed", file: productsFile, line: 3, text: `11,Skirt,Skirts,S-XL,"TinyCottons,A skirt.,7,Women`,
			want: []string{`products.csv:4:5: extraneous or missing " in quoted-field (the row starts on line 3)`}},
		{name: "lines are physical lines", file: productsFile, content: "product_id,name,category,sizes,vendor,description,buy_price,department\n" +
			"10,Dress,Dresses,S-XL,TinyCottons,\"A dress.\n" +
			"Long.\",-5,Women\n" +
			"11,Skirt,Skirts,S-XL,TinyCottons,A skirt.,x,Women\n" +
			"20,Shirt,Shirts,S-XL,Fenworth,A shirt.,9,Men\n",
			want: []string{`products.csv:3:7: buy_price "-5": must not be negative`, `products.csv:4:7: buy_price "x": not a number`}},
		{name: "empty file", file: linksFile, content: " ",
			want: []string{"coupon_product.csv:1: header has 1 columns, want 2: coupon_id,product_id"}},
		{name: "no header", file: linksFile, content: "\n",
			want: []string{"coupon_product.csv: empty file, want header coupon_id,product_id"}},
		{name: "several problems in several files", file: customersFile, line: 2, text: "1,X,-30,20.5,3,12.5,10,2,14",
			want: []string{`customer_info.csv:2:2: gender "X"`, `customer_info.csv:2:3: age "-30"`}},
		{name: "a runaway value is cut short", file: couponsFile, line: 2, text: "1,just_discount," + strings.Repeat("ä", 100) + ",10,1,2024-05-01,2024-05-10,6,2",
			want: []string{`coupon_info.csv:2:3: department "` + strings.Repeat("ä", 32) + `…": not a department`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := tt.content
			if content == "" {
				content = csvEdit(t, csvValid[tt.file], tt.line, tt.text)
			}
			dir := csvValidDir(t)
			csvWriteFiles(t, dir, map[string]string{tt.file: content})
			w, err := Load(dir)
			if err == nil {
				t.Fatal("Load: no error")
			}
			if w != nil {
				t.Errorf("Load returned tables with its error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "store: load "+dir+": ") {
				t.Errorf("error %q does not start with the directory", msg)
			}
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error:\n%s\nwant it to contain:\n%s", msg, want)
				}
			}
			// One problem, one message: a refused table must not make the
			// tables that refer to it report their rows as unknown.
			if n := strings.Count(msg, "\n") + 1; n != len(tt.want) {
				t.Errorf("error has %d lines, want %d:\n%s", n, len(tt.want), msg)
			}
		})
	}
}

func TestLoadManyProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString(strings.Join(store.CustomerColumns, ",") + "\n")
	for i := range 25 {
		b.WriteString(strings.Repeat("x", i+1) + ",X,30,20.5,3,12.5,10,2,14\n")
	}
	b.WriteString("1,F,30,20.5,3,12.5,10,2,14\n2,M,30,20.5,3,12.5,10,2,14\n")
	dir := csvValidDir(t)
	csvWriteFiles(t, dir, map[string]string{customersFile: b.String()})
	_, err := Load(dir)
	if err == nil {
		t.Fatal("Load: no error")
	}
	msg := err.Error()
	if n := strings.Count(msg, "must be M or F"); n != maxLoadErrors {
		t.Errorf("%d problems spelled out, want %d:\n%s", n, maxLoadErrors, msg)
	}
	if !strings.HasSuffix(msg, "\n… and 15 more") {
		t.Errorf("error:\n%s\nwant it to end with the count of the rest", msg)
	}
}

func TestLoadMissing(t *testing.T) {
	tests := []struct {
		name    string
		remove  string
		want    string
		without string // nothing like this may follow from the missing file
	}{
		{"customers", customersFile, "customer_info.csv: required file is missing", "no such customer"},
		{"coupons", couponsFile, "coupon_info.csv: required file is missing", "no such coupon"},
		{"products", productsFile, "products.csv (or product_info.csv): required file is missing", "no such product"},
		{"links", linksFile, "coupon_product.csv: required file is missing", "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := csvValidDir(t)
			if err := os.Remove(filepath.Join(dir, tt.remove)); err != nil {
				t.Fatal(err)
			}
			w, err := Load(dir)
			if w != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error containing %q", w, err, tt.want)
			}
			if strings.Contains(err.Error(), tt.without) {
				t.Errorf("error %q: want only the missing file", err)
			}
		})
	}
}

func TestLoadNotATable(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the dir to load
		want  string
	}{
		{"no directory", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "nope")
		}, "no such file or directory"},
		{"a file for the directory", func(t *testing.T, dir string) string {
			return filepath.Join(dir, customersFile)
		}, "customer_info.csv: not a directory"},
		{"a directory for a table", func(t *testing.T, dir string) string {
			if err := os.Remove(filepath.Join(dir, couponsFile)); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, couponsFile), 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "coupon_info.csv: not a regular file"},
		{"a table over the size limit", func(t *testing.T, dir string) string {
			// A sparse file: its size is all that is read.
			if err := os.Truncate(filepath.Join(dir, historyFile), maxTableBytes+1); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "coupon_history.csv: file is larger than 1 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t, csvValidDir(t))
			w, err := Load(dir)
			if w != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error containing %q", w, err, tt.want)
			}
		})
	}
}

func TestLoadOptional(t *testing.T) {
	tests := []struct {
		name                   string
		remove                 []string
		wantTruth, wantHistory bool
	}{
		{"both", nil, true, true},
		{"no history", []string{historyFile}, true, false},
		{"no preferences", []string{preferencesFile}, false, true},
		{"neither", []string{preferencesFile, historyFile}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := csvValidDir(t)
			for _, f := range tt.remove {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			w, err := Load(dir)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if (w.Preferences != nil) != tt.wantTruth || (w.History != nil) != tt.wantHistory {
				t.Fatalf("Preferences = %v, History = %v; want Preferences %v, History %v", w.Preferences, w.History, tt.wantTruth, tt.wantHistory)
			}
			if tt.wantTruth {
				i := slices.IndexFunc(w.Preferences, func(p store.Preferences) bool { return p.CustomerID == "2" })
				want := store.Preferences{CustomerID: "2", Propensity: -2, Department: [6]float64{0, 0, 0, 0.6, 0.1, -1.2},
					Type: [4]float64{-0.3, -0.1, 0.2, 0.3}, DiscountSensitivity: 0.3, PriceTolerance: 0.9}
				if i < 0 || w.Preferences[i] != want {
					t.Errorf("preferences of customer 2 = %+v (row %d); want %+v", w.Preferences, i, want)
				}
			}
			if tt.wantHistory {
				day := csvDay(t, "2024-05-02")
				want := []store.HistoryEntry{{CustomerID: "1", CouponID: 1, Day: day, Used: true}, {CustomerID: "2", CouponID: 3, Day: day, Used: false}}
				if !slices.Equal(w.History, want) {
					t.Errorf("History = %+v, want %+v", w.History, want)
				}
			}
		})
	}
}

func TestWrite(t *testing.T) {
	t.Run("stale optional tables are removed", func(t *testing.T) {
		dir := t.TempDir()
		full := csvAwkwardTables(t)
		if err := Write(dir, full); err != nil {
			t.Fatal(err)
		}
		if err := Write(dir, &Tables{Catalog: full.Catalog}); err != nil {
			t.Fatal(err)
		}
		w, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if w.Preferences != nil || w.History != nil {
			t.Errorf("Preferences = %v, History = %v after writing tables without them", w.Preferences, w.History)
		}
	})
	t.Run("no catalog", func(t *testing.T) {
		if err := Write(t.TempDir(), &Tables{}); err == nil {
			t.Error("Write of tables without a catalog: no error")
		}
		if err := Write(t.TempDir(), nil); err == nil {
			t.Error("Write(nil): no error")
		}
	})
	t.Run("unwritable directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Write(filepath.Join(file, "dir"), csvAwkwardTables(t)); err == nil {
			t.Error("Write under a file: no error")
		}
	})
}

// TestCSVColumns pins the preference columns to the arrays they fill.
func TestCSVColumns(t *testing.T) {
	if len(preferenceColumns) != 2+len(store.Departments)+len(store.CouponTypes)+2 {
		t.Fatalf("%d preference columns", len(preferenceColumns))
	}
	for k, d := range store.Departments {
		if got, want := preferenceColumns[2+k], "dep_"+strings.ToLower(d.String()); got != want {
			t.Errorf("column %d = %s, want %s", 2+k, got, want)
		}
	}
	for k, ct := range store.CouponTypes {
		if got, want := preferenceColumns[2+len(store.Departments)+k], "type_"+string(ct); got != want {
			t.Errorf("column %d = %s, want %s", 2+len(store.Departments)+k, got, want)
		}
	}
	if preferenceColumns[11] != "discount_sensitivity" || preferenceColumns[12] != "price_tolerance" {
		t.Errorf("last columns %q", preferenceColumns[11:])
	}
}

// FuzzLoad writes the fuzzed bytes as one table of an otherwise valid
// directory. Load must not panic, must return tables or an error and
// never both, and whatever it accepts must survive Write and Load
// unchanged.
func FuzzLoad(f *testing.F) {
	for i, name := range csvTables {
		f.Add(uint8(i), []byte(csvValid[name]))
	}
	f.Add(uint8(0), []byte("\ufeffcustomer_id,gender,age,mean_buy_price,total_coupons_used,mean_discount_received,unique_products_bought,unique_products_bought_with_coupons,total_items_bought\r\n\" 1 \",F,1,0x1p-2,0,0,0,0,0\r\n2,M,+4,1e3,0,0,0,0,0\n"))
	f.Add(uint8(2), []byte("product_id,name,category,sizes,vendor,description,buy_price,department\n10,\"a\r\r\nb\",c,s,v,d,5,Women\n11,x,c,s,v,d,7,Women\n20,\"\"\"\",c,s,v,d,9,Sport\n"))
	f.Add(uint8(1), []byte("coupon_id,coupon_type\n1,\"unclosed\n"))
	f.Add(uint8(5), []byte("customer_id,coupon_id,date,used\n1,1,0000-01-01,1\n1,2,9999-12-31,0\n"))
	f.Fuzz(func(t *testing.T, table uint8, data []byte) {
		dir := csvValidDir(t)
		name := csvTables[int(table)%len(csvTables)]
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := Load(dir)
		if err != nil {
			if w != nil {
				t.Fatalf("Load returned tables with error %v", err)
			}
			return
		}
		if w == nil || w.Catalog == nil {
			t.Fatal("Load returned neither tables nor an error")
		}
		csvSameTables(t, csvWriteLoad(t, t.TempDir(), w), w)
	})
}

// csvWriteLoad writes tables to dir and loads them back.
func csvWriteLoad(t *testing.T, dir string, tables *Tables) *Tables {
	t.Helper()
	if err := Write(dir, tables); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return got
}

// A history a storeflow appends to while it runs (the header once, rows
// appended one at a time) reads as a generated one: with ReadHistory, whose
// rows may name customers of any catalog and whose last line, still being
// written, waits for the next read; and with Load, which storeflow train
// uses, once it lies in a DATA_DIR.
func TestReadAppendedHistory(t *testing.T) {
	dir := csvValidDir(t)
	path := filepath.Join(dir, historyFile)
	appendRows := func(rows string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(rows); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendRows("2,1,2024-05-03,1\n1,2,2024-05-03,0\n2,3,2024-")
	want := []store.HistoryEntry{
		{CustomerID: "1", CouponID: 1, Day: csvDay(t, "2024-05-02"), Used: true},
		{CustomerID: "2", CouponID: 3, Day: csvDay(t, "2024-05-02")},
		{CustomerID: "2", CouponID: 1, Day: csvDay(t, "2024-05-03"), Used: true},
		{CustomerID: "1", CouponID: 2, Day: csvDay(t, "2024-05-03")},
	}
	got, err := ReadHistory(path)
	if err != nil {
		t.Fatalf("ReadHistory with a row half appended: %v", err)
	}
	csvSameRows(t, historyFile, got, want)

	appendRows("05-04,0\n99,1,2024-05-04,1\n") // the row finished; one of a customer the directory lacks
	got, err = ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, store.HistoryEntry{CustomerID: "2", CouponID: 3, Day: csvDay(t, "2024-05-04")},
		store.HistoryEntry{CustomerID: "99", CouponID: 1, Day: csvDay(t, "2024-05-04"), Used: true})
	csvSameRows(t, historyFile, got, want)

	// storeflow train's Load: every row must name the directory's customers.
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no such customer") {
		t.Fatalf("Load with a row of an unknown customer: %v, want it refused", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.TrimSuffix(data, []byte("99,1,2024-05-04,1\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	tables, err := Load(dir)
	if err != nil {
		t.Fatalf("Load of an appended history: %v", err)
	}
	csvSameRows(t, historyFile, tables.History, want[:5])
}

// A history file with a bad row is refused whole, naming the line.
func TestReadHistoryRefuses(t *testing.T) {
	for name, content := range map[string]string{
		"bad used":   "customer_id,coupon_id,date,used\n1,1,2024-05-02,yes\n",
		"bad header": "customer,coupon_id,date,used\n1,1,2024-05-02,1\n",
		"bad date":   "customer_id,coupon_id,date,used\n1,1,05/02/2024,1\n",
		"empty":      "",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "history.csv")
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadHistory(path); err == nil || !strings.Contains(err.Error(), "history.csv") {
				t.Fatalf("ReadHistory: %v, want an error naming the file", err)
			}
		})
	}
	if _, err := ReadHistory(filepath.Join(t.TempDir(), "none.csv")); err == nil {
		t.Fatal("ReadHistory of a missing file: no error")
	}
}
