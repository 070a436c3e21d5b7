GREETING = "hello"
LANGUAGE = "en"
