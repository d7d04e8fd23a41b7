/*
 * The forwarder of cmd/fwdfloor in C, without Go's runtime: `fwdfloor PORT
 * SIZE` accepts TCP connections on 127.0.0.1:PORT, numbered in the order it
 * accepts them, and writes each SIZE-byte frame to the connection its first
 * four bytes (little-endian) name. One thread, one epoll instance,
 * level-triggered; a frame is written whole or not at all (a floor, not a
 * relay). Built and run by scripts/fwdbench.sh when a C compiler is here.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
	int fd;
	int have;
	unsigned char *buf;
};

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PORT SIZE\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]), size = atoi(argv[2]);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
		perror("fwdfloor");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	struct conn **conns = NULL;
	size_t nconns = 0, capconns = 0;
	struct epoll_event evs[128];
	for (;;) {
		int n = epoll_wait(ep, evs, 128, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				if (nconns == capconns) {
					capconns = capconns ? 2 * capconns : 1024;
					conns = realloc(conns, capconns * sizeof *conns);
				}
				c = calloc(1, sizeof *c);
				c->fd = fd;
				c->buf = malloc(size);
				conns[nconns++] = c;
				struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
				continue;
			}
			for (;;) {
				ssize_t r = read(c->fd, c->buf + c->have, size - c->have);
				if (r <= 0)
					break;
				c->have += r;
				if (c->have < size)
					break;
				c->have = 0;
				uint32_t d;
				memcpy(&d, c->buf, 4);
				if (d < nconns && write(conns[d]->fd, c->buf, size) < 0 && errno != EAGAIN)
					break;
			}
		}
	}
}
