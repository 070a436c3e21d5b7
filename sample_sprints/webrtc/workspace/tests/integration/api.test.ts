// Integration tests for the call API (filled in by the testing agent).
test.todo("GET /api/calls/:id returns the call");
