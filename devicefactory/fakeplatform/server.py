"""The fake platform's HTTPS server: TLS with a trustme CA, the request log, and transport-level faults.

`Server` reads each request, asks the `Api` for the answer, and applies what the transport decides around
it: bodies over `max_request_bytes` (413, decided from Content-Length before the body is read), chunked
bodies (411), injected failures (`Faults.fail_next`), delays (`Faults.delay`) and dropped connections.
Each request is logged before it is answered, so a client that has its answer finds it in the log; the log
never holds a body or a token.
"""

import json
import socket
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .api import BAD_REQUEST, error_reply

# An oversized body up to this size is read and dropped so that the client gets to read its 413;
# a larger one is refused from its Content-Length and the connection closed.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
# The fake's own error ids (the 413 is APIClient's "Request content exceeds 512Kb"; no source gives its id).
TOO_LARGE = "FAKE0413E"
LENGTH_REQUIRED = "FAKE0411E"
INJECTED = "FAKE9999E"


class _Failure:
    """One fail_next() rule: how many matching requests remain to fail, and how."""

    def __init__(self, count, status, path, retry_after, after_processing, drop_connection):
        self.remaining = count
        self.status = status
        self.path = path
        self.retry_after = retry_after
        self.after_processing = after_processing
        self.drop_connection = drop_connection

    def reply(self):
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return error_reply(self.status, INJECTED, "injected failure (FakePlatform.fail_next)", headers)


class Faults:
    """The transport's failure knobs: injected failures and delays, matched by a substring of the path."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set when the server stops, so that delays end at once
        self.clear()

    def stop(self):
        self._stopping.set()

    def clear(self):
        with self._lock:
            self._failures = []
            self._delays = {}  # path substring or None -> seconds

    def fail_next(self, count, status, path, retry_after, after_processing, drop_connection):
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if count > 0:
            with self._lock:
                self._failures.append(_Failure(count, status, path, retry_after, after_processing, drop_connection))

    def delay(self, seconds, path):
        with self._lock:
            if seconds > 0:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def take(self, path):
        """The fail_next() rule this request uses up, or None."""
        with self._lock:
            for failure in self._failures:
                if failure.path is None or failure.path in path:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def pause(self, path):
        with self._lock:
            seconds = max((s for p, s in self._delays.items() if p is None or p in path), default=0)
        if seconds:
            self._stopping.wait(seconds)


class RequestLog:
    """One dict per request (method, path, query, status, bytes), and optionally a line per request.

    A request is answered (and so recorded) after it is applied, and a delayed one seconds later: a request that
    arrived before `clear()` (a test's reset) is left out of the entries, so it never shows up as the next
    test's."""

    def __init__(self):
        self._lock = threading.Lock()
        self.entries = []
        self.generation = 0  # how many times the entries were cleared
        self.log_file = None  # a text stream for one line per request (the standalone command), or None

    def record(self, method, path, query, status, body_bytes, generation=None):
        with self._lock:
            if generation in (None, self.generation):
                self.entries.append({"method": method, "path": path, "query": query, "status": status,
                                     "bytes": body_bytes})
        if self.log_file is not None:
            print(f"{method} {path} -> {status if status is not None else 'dropped'} ({body_bytes} bytes)",
                  file=self.log_file, flush=True)

    def clear(self):
        with self._lock:
            self.entries.clear()
            self.generation += 1

    def line(self, text):
        """A line of what happened besides requests (the MQTT side's connects and refusals), when logging."""
        if self.log_file is not None:
            print(text, file=self.log_file, flush=True)


class Server(ThreadingHTTPServer):
    """A threading HTTPS server for `api`, whose TLS handshakes happen in the request threads."""

    daemon_threads = True

    def __init__(self, address, api, ca, log, faults, max_request_bytes):
        host = address[0]
        names = ["127.0.0.1", "localhost"] + ([host] if host not in ("127.0.0.1", "localhost") else [])
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(self.ssl_context)
        self.api = api
        self.max_request_bytes = max_request_bytes
        self.log = log
        self.faults = faults
        self._connections = set()
        self._connections_lock = threading.Lock()
        self._thread = None
        super().__init__(address, _Handler)

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fakeplatform-{self.server_address[1]}", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop serving, end delays, cut open connections and close the socket."""
        self.faults.stop()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self._close_connections()
        self.server_close()

    def server_bind(self):
        # HTTPServer.server_bind looks the host up with getfqdn(), which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        raw, client_address = self.socket.accept()
        # Without this, Nagle's algorithm meets the client's delayed ACK: ~40 ms per response.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(connection)
        return connection, client_address

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def _close_connections(self):
        """Cut kept-alive connections, so that a stopped fake answers nothing more."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                socket.socket.shutdown(connection, socket.SHUT_RDWR)  # the TCP socket, under the TLS layer
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # A client that hung up, timed out or refused our certificate; only worth a line when logging.
        if self.log.log_file is not None:
            print(f"connection from {client_address[0]} failed: {sys.exc_info()[1]!r}",
                  file=self.log.log_file, flush=True)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the API for the reply, and applies the transport's faults around it."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeWatsonIoTPlatform/1"
    sys_version = ""
    timeout = 60  # a client that stalls mid-request is dropped, not waited for forever

    def setup(self):
        super().setup()
        self.connection.do_handshake()

    def log_message(self, format, *args):
        pass  # quiet: the server records each request itself

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        server = self.server
        url = urlsplit(self.path)
        path = url.path
        generation = server.log.generation  # the log this request belongs to, should a reset come meanwhile

        def record(status, body_bytes):
            server.log.record(method, path, url.query, status, body_bytes, generation)

        declared = self.headers.get("Content-Length")
        if declared is None and "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Read the body first: closing on a client still sending would reset the connection under it.
            drained = self._drain_chunked()
            record(411, 0)
            self._send(error_reply(411, LENGTH_REQUIRED, "send the body with a Content-Length"), close=True)
            if not drained:
                self.close_connection = True
            return
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            record(400, 0)
            self._send(error_reply(400, BAD_REQUEST, "Content-Length is not a number"), close=True)
            return
        length = int(declared or 0)
        oversized = length > server.max_request_bytes
        close = False
        if oversized:
            body = None
            close = not self._drain(length)
        else:
            body = self.rfile.read(length)
            if len(body) < length:  # the client hung up mid-body: nobody to answer
                self.close_connection = True
                record(None, length)
                return
        failure = server.faults.take(path)
        if failure is not None and not failure.after_processing:
            reply = failure.reply()
        elif oversized:
            reply = error_reply(413, TOO_LARGE, f"the request body is {length} bytes; at most "
                                                f"{server.max_request_bytes} are accepted")
        else:
            reply = server.api.handle(method, path, parse_qs(url.query, keep_blank_values=True),
                                      self.headers.get("Authorization"), body)
        server.faults.pause(path)
        if failure is not None:
            if failure.drop_connection:
                self.close_connection = True  # end the connection without writing a byte
                record(None, length)
                return
            reply = failure.reply()
        record(reply[0], length)
        self._send(reply, close)

    def _drain(self, length):
        """Read and drop a body the fake refuses; False when it is too big to bother (then close instead)."""
        if length > MAX_DRAIN_BYTES:
            return False
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def _drain_chunked(self):
        """Read and drop a chunked body; False when it is malformed or too big to bother."""
        remaining = MAX_DRAIN_BYTES
        while remaining > 0:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                return False
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return True
            remaining -= size
            if remaining < 0 or len(self.rfile.read(size + 2)) < size + 2:
                return False
        return False

    def _send(self, reply, close=False):
        status, payload, headers = reply
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
