#include "fm/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fm/error.h"

namespace fm::io {
namespace {

struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path, const std::string& context, bool writable) {
  FileDescriptor f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) error(context, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) error(context, path, ": cannot stat: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) error(context, path, ": not a regular file");
  if (st.st_size == 0) return;  // mmap rejects a zero length
  const int protection = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* addr = ::mmap(nullptr, size_t(st.st_size), protection, MAP_PRIVATE, f.fd, 0);
  if (addr == MAP_FAILED) error(context, path, ": mmap: ", std::strerror(errno));
  data_ = static_cast<char*>(addr);
  size_ = size_t(st.st_size);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace fm::io
