package liveview

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"

	"github.com/storeflow/storeflow/event"
)

// web holds the pages and their scripts and styles: no build step, nothing
// fetched from elsewhere.
//
//go:embed web
var web embed.FS

// pageHeaders keep the pages to their own origin: scripts, styles and the
// stream from storeflow only, never framed by another site.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// registerPages adds the store page (GET /), a shopper's phone
// (GET /phone/{id}), their assets (GET /assets/…) and the alerts' "mark as
// helped" (POST /api/alerts/{id}/helped).
func (v *View) registerPages(mux *http.ServeMux) {
	assets, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(assets)
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			pageHeaders(w.Header())
			http.ServeFileFS(w, r, assets, name)
		}
	}
	mux.HandleFunc("GET /{$}", page("store.html"))
	store := page("phone.html")
	mux.HandleFunc("GET /phone/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := event.CheckID(r.PathValue("id")); err != nil {
			http.Error(w, "customer id: "+err.Error(), http.StatusBadRequest)
			return
		}
		store(w, r)
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w.Header())
		files.ServeHTTP(w, r)
	})))
	mux.HandleFunc("POST /api/alerts/{id}/helped", v.serveHelped)
}

// serveHelped closes a shopper's browsing alert for every viewer: a member
// of staff went to help. Only the view's own pages may ask: a request a
// browser sends from another site's page is refused.
func (v *View) serveHelped(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	if err := event.CheckID(id); err != nil {
		http.Error(w, "customer id: "+err.Error(), http.StatusBadRequest)
		return
	}
	data, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	v.mu.Lock()
	_, open := v.alerts[id]
	if open {
		delete(v.alerts, id)
		if v.next() {
			v.publish(kindHelped, id, data)
		}
	}
	v.mu.Unlock()
	if !open {
		http.Error(w, "no open alert for shopper "+id, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin reports whether a browser sent r from a page of this host:
// Sec-Fetch-Site when the browser sends it, else Origin; a request with
// neither (curl, a script) is not a browser's cross-site request.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}
