#include "server/request_parser.h"

#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"

namespace inferd {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::DynamicMessageFactory;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptorProto;
using google::protobuf::Message;
using google::protobuf::Reflection;


// The same messages with every string field turned into bytes, in a pool of
// their own: parsing into these never fails on UTF-8, so we can say which
// field was wrong.
class LenientMessages {
 public:
  static LenientMessages& Get() {
    static LenientMessages* instance = new LenientMessages();
    return *instance;
  }

  const Message* PrototypeFor(const Descriptor* strict) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pool_.FindFileByName(strict->file()->name()) == nullptr) AddFile(*strict->file());
    const Descriptor* lenient = pool_.FindMessageTypeByName(strict->full_name());
    return lenient == nullptr ? nullptr : factory_.GetPrototype(lenient);
  }

 private:
  LenientMessages() : factory_(&pool_) {}

  void AddFile(const google::protobuf::FileDescriptor& file) {
    for (int i = 0; i < file.dependency_count(); ++i) {
      if (pool_.FindFileByName(file.dependency(i)->name()) == nullptr) AddFile(*file.dependency(i));
    }
    FileDescriptorProto proto;
    file.CopyTo(&proto);
    proto.clear_service();
    for (auto& message : *proto.mutable_message_type()) ToBytes(&message);
    pool_.BuildFile(proto);
  }

  static void ToBytes(google::protobuf::DescriptorProto* message) {
    for (auto& field : *message->mutable_field()) {
      if (field.type() == google::protobuf::FieldDescriptorProto::TYPE_STRING) {
        field.set_type(google::protobuf::FieldDescriptorProto::TYPE_BYTES);
      }
    }
    for (auto& nested : *message->mutable_nested_type()) ToBytes(&nested);
  }

  std::mutex mu_;
  DescriptorPool pool_;
  DynamicMessageFactory factory_;
};

// The first field, by path ("stopping.stop[2]"), whose bytes were declared
// string but are not UTF-8; "" if none.
std::string FindInvalidUtf8(const Message& lenient, const Descriptor& strict, const std::string& prefix) {
  const Reflection* reflection = lenient.GetReflection();
  const Descriptor* descriptor = lenient.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const FieldDescriptor* strict_field = strict.FindFieldByNumber(field->number());
    if (strict_field == nullptr) continue;
    const std::string name = prefix + field->name();
    if (strict_field->type() == FieldDescriptor::TYPE_STRING) {
      if (field->is_repeated()) {
        for (int k = 0; k < reflection->FieldSize(lenient, field); ++k) {
          if (!IsValidUtf8(reflection->GetRepeatedString(lenient, field, k))) return absl::StrCat(name, "[", k, "]");
        }
      } else if (!IsValidUtf8(reflection->GetString(lenient, field))) {
        return name;
      }
    } else if (strict_field->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int k = 0; k < reflection->FieldSize(lenient, field); ++k) {
          std::string bad = FindInvalidUtf8(reflection->GetRepeatedMessage(lenient, field, k),
                                            *strict_field->message_type(), absl::StrCat(name, "[", k, "]."));
          if (!bad.empty()) return bad;
        }
      } else if (reflection->HasField(lenient, field)) {
        std::string bad = FindInvalidUtf8(reflection->GetMessage(lenient, field), *strict_field->message_type(),
                                          name + ".");
        if (!bad.empty()) return bad;
      }
    }
  }
  return "";
}

}  // namespace

absl::Status ParseRequest(const grpc::ByteBuffer& wire, Message* out) {
  std::vector<grpc::Slice> slices;
  if (!wire.Dump(&slices).ok()) return absl::InvalidArgumentError("request: unreadable message");
  std::string bytes;
  for (const grpc::Slice& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());

  const Message* prototype = LenientMessages::Get().PrototypeFor(out->GetDescriptor());
  if (prototype != nullptr) {
    std::unique_ptr<Message> lenient(prototype->New());
    if (!lenient->ParseFromString(bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("request: not a valid ", out->GetDescriptor()->full_name()));
    }
    const std::string bad = FindInvalidUtf8(*lenient, *out->GetDescriptor(), "");
    if (!bad.empty()) return absl::InvalidArgumentError(absl::StrCat(bad, ": not valid UTF-8"));
  }
  if (!out->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("request: not a valid ", out->GetDescriptor()->full_name()));
  }
  return absl::OkStatus();
}

}  // namespace inferd
