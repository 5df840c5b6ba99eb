package peerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/storeflow/storeflow/internal/clip"
	"github.com/storeflow/storeflow/internal/redact"
)

// Outcome is how a call ended, as a metric label.
type Outcome string

// The outcomes of a call.
const (
	OK          Outcome = "ok"           // a 2xx answer within the size limit
	Timeout     Outcome = "timeout"      // the call's own deadline (WithTimeout) or the caller's passed
	Canceled    Outcome = "canceled"     // the caller cancelled
	Transport   Outcome = "transport"    // no answer: connection refused, reset, TLS failure, a broken body
	HTTP4xx     Outcome = "http_4xx"     // the peer refused the request
	HTTP5xx     Outcome = "http_5xx"     // the peer failed
	BadResponse Outcome = "bad_response" // a 1xx or 3xx answer, or a 2xx one over the size limit
)

// Response is how a call ended and what the peer answered.
type Response struct {
	Outcome Outcome
	Status  int         // the answer's status code; 0 without an answer
	Header  http.Header // nil without an answer
	Body    []byte      // the answer's body, at most the limit given to Call
	// Err says what went wrong, nil exactly when Outcome is OK. It does not
	// name the peer (the caller does, with redact.URL) and quotes at most a
	// line of the answer (ErrorText).
	Err error
}

// timeout is the cause WithTimeout gives its deadline.
type timeout time.Duration

func (t timeout) Error() string { return "timed out after " + time.Duration(t).String() }

// WithTimeout returns ctx bounded by a call's own deadline d: a call that
// misses it ends in Timeout "timed out after d", told from the caller's
// deadline passing ("the caller's deadline passed").
func WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, timeout(d))
}

// Ended is how a call ended that its context ended (ctx.Err() is not nil):
// Timeout when its own deadline (WithTimeout) or the caller's passed,
// Canceled when the caller cancelled. while says what the call was doing
// ("reading the answer"; "" while sending). Err wraps
// context.DeadlineExceeded or context.Canceled.
func Ended(ctx context.Context, while string) Response {
	if while != "" {
		while = " " + while
	}
	var own timeout
	switch {
	case errors.As(context.Cause(ctx), &own):
		return Response{Outcome: Timeout, Err: fmt.Errorf("%v%s: %w", own, while, context.DeadlineExceeded)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Response{Outcome: Timeout, Err: fmt.Errorf("the caller's deadline passed%s: %w", while, context.DeadlineExceeded)}
	}
	return Response{Outcome: Canceled, Err: fmt.Errorf("canceled%s: %w", while, context.Canceled)}
}

// Call sends req, reads at most maxBody bytes of the answer and classifies
// how the call ended. req's context bounds the whole call, the answer's body
// included; give it the call's own deadline with WithTimeout. An error
// answer (4xx, 5xx) is classified by its status whatever its size; a 2xx
// answer over maxBody is a BadResponse. Call never retries.
func (c *Client) Call(req *http.Request, maxBody int) Response {
	ctx := req.Context()
	resp, err := c.do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Ended(ctx, "")
		}
		return Response{Outcome: Transport, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBody)+1))
	if err != nil {
		if ctx.Err() != nil {
			return Ended(ctx, "reading the answer")
		}
		return Response{Outcome: Transport, Err: fmt.Errorf("reading the answer: %w", redact.Error(err, req.URL.String()))}
	}
	over := len(body) > maxBody
	if over {
		body = body[:maxBody]
	}
	r := Response{Outcome: OK, Status: resp.StatusCode, Header: resp.Header, Body: body}
	status := strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	switch {
	case resp.StatusCode >= 500:
		r.Outcome, r.Err = HTTP5xx, errors.New(status+": "+ErrorText(body))
	case resp.StatusCode >= 400:
		r.Outcome, r.Err = HTTP4xx, errors.New(status+": "+ErrorText(body))
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		r.Outcome, r.Err = BadResponse, errors.New("unexpected "+status)
	case over:
		r.Outcome, r.Err = BadResponse, fmt.Errorf("%s: answer over %d bytes", status, maxBody)
	}
	return r
}

// maxErrorText is how much of an error answer an error quotes.
const maxErrorText = 200

// ErrorText is an error answer as an error shows it, on one printable line
// of at most 200 bytes: the answer's "error" text when it is a JSON object
// with one (the error shape of the central, of storeflow's prediction server
// and of the Open Inference Protocol), else the start of the body.
func ErrorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	s := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = clip.String(e.Error, maxErrorText)
	} else {
		s = clip.String(string(body[:min(len(body), maxErrorText+utf8.UTFMax)]), maxErrorText)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if s = strings.TrimSpace(s); s == "" {
		return "(empty body)"
	}
	return s
}
