// End-to-end: two browsers join one call and see each other's video.
test.todo("two peers connect");
