module github.com/duetcall/duet

go 1.26
