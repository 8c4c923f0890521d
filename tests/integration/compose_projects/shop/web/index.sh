#!/bin/sh
# A CGI script: asks db and cache by service name and reports their answers.
echo "Content-Type: text/plain"
echo
echo "$GREETING"
echo "db says: $(echo GET | nc db 5432)"
echo "cache says: $(echo PING | nc cache 6379)"
