// A caching CPU allocator for libtorch: large blocks (>= 64 KiB) freed by a tensor go to a free
// list keyed by exact size and are handed out again, instead of back to glibc. Training allocates
// the same sizes every step, so the cache stays small, and glibc's heap no longer fragments
// (measured: peak RSS 1.3-1.5x PyTorch's with glibc, ~1.1x with this). Cached memory is not given
// back to the system; MASKSUB_CACHING_ALLOCATOR=0 turns it off.
#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace masksub {
namespace {

constexpr size_t kMinimumCached = 64 * 1024;
constexpr size_t kAlignment = 64;

struct Cache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free;
};

// Never destroyed: tensors may be freed during process exit, after static destructors ran.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

struct BlockHeader {
  size_t size;
};

// Every block carries its size in a 64-byte slot just before the data, so that the context of a
// DataPtr is the data pointer itself: libtorch's raw_allocate/raw_deallocate need exactly that.
BlockHeader* header_of(void* data) {
  return reinterpret_cast<BlockHeader*>(static_cast<char*>(data) - kAlignment);
}

void release(void* data) {
  if (!data) return;
  BlockHeader* header = header_of(data);
  if (header->size < kMinimumCached) {
    std::free(header);
    return;
  }
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.free[header->size].push_back(header);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate_block(size_t n) const {
    void* block = nullptr;
    if (n >= kMinimumCached) {
      Cache& c = cache();
      std::lock_guard<std::mutex> lock(c.mutex);
      auto found = c.free.find(n);
      if (found != c.free.end() && !found->second.empty()) {
        block = found->second.back();
        found->second.pop_back();
      }
    }
    if (!block) {
      if (posix_memalign(&block, kAlignment, kAlignment + n) != 0) throw std::bad_alloc();
      static_cast<BlockHeader*>(block)->size = n;
    }
    void* data = static_cast<char*>(block) + kAlignment;
    return c10::DataPtr(data, data, &release, c10::Device(c10::DeviceType::CPU));
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return allocate_block(n); }
  void copy_data(void* destination, const void* source, std::size_t count) const override {
    default_copy_data(destination, source, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return allocate_block(n); }
#endif
};

}  // namespace

void install_caching_allocator() {
  const char* setting = std::getenv("MASKSUB_CACHING_ALLOCATOR");
  if (setting && std::string(setting) == "0") return;
  static CachingCpuAllocator* allocator = new CachingCpuAllocator();
  c10::SetCPUAllocator(allocator, /*priority=*/10);
}

}  // namespace masksub
