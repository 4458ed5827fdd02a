// Passing a file descriptor over a Unix socket (SCM_RIGHTS) with one byte of
// data: how the nvidia-persistenced stand-in hands the driver root to the
// simulator library in a container. Header-only: the library and the
// stand-in are separate binaries. Both calls are thread-safe.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace gdp::sim {

// Sends `fd` and one byte on `socket`; false on failure.
inline bool SendFd(int socket, int fd) {
  char byte = 'R';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n = 0;
  while ((n = sendmsg(socket, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n == 1;
}

// Receives what SendFd sent (close-on-exec); -1 when nothing came.
inline int RecvFd(int socket) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  int fd = -1;
  if (recvmsg(socket, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
  }
  return fd;
}

}  // namespace gdp::sim
