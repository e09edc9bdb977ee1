// Package origin owns talking to origins, the HTTP servers that hold the
// content: probing a URL's length, range support and validators (Probe),
// conditional revalidation (Validate), fetching pieces by range or by
// streaming the whole body, with retries and resume (FetchPiece, Fill), and
// streaming a body of unknown length (Download). It stores nothing (callers
// hand Fill a Sink) and knows nothing of peers or supernodes.
//
// Files: client.go holds the Client, its options, transport and retry loop;
// errors.go what failed and whether it is worth retrying; header.go what
// response headers say (validators, Content-Range); probe.go probing and
// revalidation; fill.go Fill and its options; ranges.go fetching pieces by
// concurrent range requests; stream.go filling from one streamed body;
// download.go streaming a body to a writer.
package origin
