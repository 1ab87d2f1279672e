#include "holdfast/archive/audit_tree.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <exception>
#include <initializer_list>
#include <limits>
#include <optional>
#include <typeinfo>

#include "holdfast/archive/merkle.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "json.h"

namespace holdfast::archive {

using internal::JsonObject;
using internal::JsonString;
using Poco::JSON::Object;

namespace {

constexpr size_t kSignatureSize = 64;
constexpr size_t kPublicKeySize = 65;

void PutBe(Bytes& out, uint64_t v, int bytes) {
  for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<uint8_t>(v >> shift));
  }
}

void PutField(Bytes& out, std::string_view field) {
  PutBe(out, field.size(), 4);
  ByteView bytes = AsBytes(field);
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// ------------------------------------------------------------------- writing

std::string HexArray(const std::vector<Bytes>& hashes) {
  std::string out = "[";
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += JsonString(ToHex(hashes[i]));
  }
  return out + "]";
}

std::string EntryJson(const AuditEvent& e) {
  return JsonObject()
      .Int("index", static_cast<int64_t>(e.index))
      .Int("at_ms", e.at_ms)
      .String("actor", e.actor)
      .String("action", e.action)
      .String("detail", e.detail)
      .str();
}

std::string HeadJson(const TreeHead& h) {
  return JsonObject()
      .Int("tree_size", static_cast<int64_t>(h.tree_size))
      .String("root_hash", ToHex(h.root_hash))
      .Int("signed_at_ms", h.signed_at_ms)
      .String("signature", ToHex(h.signature))
      .String("key_fingerprint", h.key_fingerprint)
      .str();
}

// ------------------------------------------------------------------- reading
//
// Strict: every member BundleJson writes must be there with its type, and no
// other, so no part of a bundle goes unchecked.

Status Malformed(std::string_view where, std::string_view what) {
  return Status::InvalidArgument("proof bundle: " + std::string(where) + " " + std::string(what));
}

Status ExactMembers(const Object& o, std::string_view where,
                    std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (!o.has(name)) return Malformed(where, "lacks \"" + std::string(name) + "\"");
  }
  if (o.size() != names.size()) return Malformed(where, "has members other than expected");
  return Status::Ok();
}

Result<std::string> StringMember(const Object& o, std::string_view where, const char* name) {
  const Poco::Dynamic::Var v = o.get(name);
  if (!v.isString()) return Malformed(where, "\"" + std::string(name) + "\" is not a string");
  return v.extract<std::string>();
}

Result<int64_t> IntMember(const Object& o, std::string_view where, const char* name,
                          int64_t min) {
  const Poco::Dynamic::Var v = o.get(name);
  // Poco keeps an integer that does not fit int64 as uint64 (not signed).
  const bool integer = v.isInteger() && v.isSigned();
  const int64_t n = integer ? v.convert<Poco::Int64>() : 0;
  if (!integer || n < min) {
    return Malformed(where, "\"" + std::string(name) + "\" is not an integer" +
                                (min == std::numeric_limits<int64_t>::min()
                                     ? ""
                                     : " >= " + std::to_string(min)));
  }
  return n;
}

Result<Bytes> HexOf(const std::string& text, std::string_view where, std::string_view name,
                    size_t size) {
  std::optional<Bytes> bytes = FromHex(text);
  if (!bytes || bytes->size() != size || ToHex(*bytes) != text) {
    return Malformed(where, "\"" + std::string(name) + "\" is not " + std::to_string(size) +
                                " bytes of lower-case hex");
  }
  return *std::move(bytes);
}

Result<Bytes> HexMember(const Object& o, std::string_view where, const char* name, size_t size) {
  HF_ASSIGN_OR_RETURN(std::string text, StringMember(o, where, name));
  return HexOf(text, where, name, size);
}

Result<Object::Ptr> ObjectMember(const Object& o, std::string_view where, const char* name) {
  if (!o.isObject(name)) return Malformed(where, "\"" + std::string(name) + "\" is not an object");
  return o.getObject(name);
}

Result<std::vector<Bytes>> HashArrayMember(const Object& o, std::string_view where,
                                           const char* name) {
  if (!o.isArray(name)) return Malformed(where, "\"" + std::string(name) + "\" is not an array");
  Poco::JSON::Array::Ptr array = o.getArray(name);
  std::vector<Bytes> out;
  for (size_t i = 0; i < array->size(); ++i) {
    const Poco::Dynamic::Var v = array->get(static_cast<unsigned>(i));
    if (!v.isString()) return Malformed(where, "\"" + std::string(name) + "\" holds a non-string");
    HF_ASSIGN_OR_RETURN(Bytes hash, HexOf(v.extract<std::string>(), where,
                                          std::string(name) + "[" + std::to_string(i) + "]",
                                          merkle::kHashSize));
    out.push_back(std::move(hash));
  }
  return out;
}

Result<TreeHead> ParseHead(const Object& o, std::string_view where) {
  HF_RETURN_IF_ERROR(ExactMembers(
      o, where, {"tree_size", "root_hash", "signed_at_ms", "signature", "key_fingerprint"}));
  TreeHead h;
  HF_ASSIGN_OR_RETURN(int64_t size, IntMember(o, where, "tree_size", 0));
  h.tree_size = static_cast<uint64_t>(size);
  HF_ASSIGN_OR_RETURN(h.root_hash, HexMember(o, where, "root_hash", merkle::kHashSize));
  HF_ASSIGN_OR_RETURN(h.signed_at_ms, IntMember(o, where, "signed_at_ms",
                                                std::numeric_limits<int64_t>::min()));
  HF_ASSIGN_OR_RETURN(h.signature, HexMember(o, where, "signature", kSignatureSize));
  HF_ASSIGN_OR_RETURN(h.key_fingerprint, StringMember(o, where, "key_fingerprint"));
  return h;
}

Result<AuditEvent> ParseEntry(const Object& o) {
  constexpr std::string_view where = "entry";
  HF_RETURN_IF_ERROR(ExactMembers(o, where, {"index", "at_ms", "actor", "action", "detail"}));
  AuditEvent e;
  HF_ASSIGN_OR_RETURN(int64_t index, IntMember(o, where, "index", 0));
  e.index = static_cast<uint64_t>(index);
  HF_ASSIGN_OR_RETURN(e.at_ms,
                      IntMember(o, where, "at_ms", std::numeric_limits<int64_t>::min()));
  HF_ASSIGN_OR_RETURN(e.actor, StringMember(o, where, "actor"));
  HF_ASSIGN_OR_RETURN(e.action, StringMember(o, where, "action"));
  HF_ASSIGN_OR_RETURN(e.detail, StringMember(o, where, "detail"));
  return e;
}

Result<ProofBundle> ParseBundleObject(const Object& o) {
  HF_ASSIGN_OR_RETURN(std::string format, StringMember(o, "bundle", "format"));
  if (format != kAuditProofFormat) {
    return Malformed("bundle", "has format \"" + format + "\", want \"" +
                                   std::string(kAuditProofFormat) + "\"");
  }
  HF_ASSIGN_OR_RETURN(std::string type, StringMember(o, "bundle", "type"));
  if (type == "inclusion") {
    HF_RETURN_IF_ERROR(ExactMembers(o, "bundle", {"format", "type", "entry", "leaf_hash", "proof",
                                                  "tree_head", "org_root_public_key"}));
    InclusionBundle b;
    HF_ASSIGN_OR_RETURN(Object::Ptr entry, ObjectMember(o, "bundle", "entry"));
    HF_ASSIGN_OR_RETURN(b.entry, ParseEntry(*entry));
    HF_ASSIGN_OR_RETURN(b.entry.leaf_hash, HexMember(o, "bundle", "leaf_hash", merkle::kHashSize));
    HF_ASSIGN_OR_RETURN(b.proof, HashArrayMember(o, "bundle", "proof"));
    HF_ASSIGN_OR_RETURN(Object::Ptr head, ObjectMember(o, "bundle", "tree_head"));
    HF_ASSIGN_OR_RETURN(b.head, ParseHead(*head, "tree_head"));
    HF_ASSIGN_OR_RETURN(b.org_root_public,
                        HexMember(o, "bundle", "org_root_public_key", kPublicKeySize));
    return ProofBundle(std::move(b));
  }
  if (type == "consistency") {
    HF_RETURN_IF_ERROR(ExactMembers(o, "bundle", {"format", "type", "old_tree_head",
                                                  "new_tree_head", "proof",
                                                  "org_root_public_key"}));
    ConsistencyBundle b;
    HF_ASSIGN_OR_RETURN(Object::Ptr old_head, ObjectMember(o, "bundle", "old_tree_head"));
    HF_ASSIGN_OR_RETURN(b.old_head, ParseHead(*old_head, "old_tree_head"));
    HF_ASSIGN_OR_RETURN(Object::Ptr new_head, ObjectMember(o, "bundle", "new_tree_head"));
    HF_ASSIGN_OR_RETURN(b.new_head, ParseHead(*new_head, "new_tree_head"));
    HF_ASSIGN_OR_RETURN(b.proof, HashArrayMember(o, "bundle", "proof"));
    HF_ASSIGN_OR_RETURN(b.org_root_public,
                        HexMember(o, "bundle", "org_root_public_key", kPublicKeySize));
    return ProofBundle(std::move(b));
  }
  return Malformed("bundle", "has unknown type \"" + type + "\"");
}

std::string SizeText(uint64_t size) { return "size " + std::to_string(size); }

}  // namespace

Bytes AuditEntryBytes(const AuditEvent& e) {
  Bytes out;
  out.reserve(4 + kAuditEntryLabel.size() + 16 + 12 + e.actor.size() + e.action.size() +
              e.detail.size());
  PutField(out, kAuditEntryLabel);
  PutBe(out, e.index, 8);
  PutBe(out, static_cast<uint64_t>(e.at_ms), 8);
  PutField(out, e.actor);
  PutField(out, e.action);
  PutField(out, e.detail);
  return out;
}

Bytes AuditLeafHash(const AuditEvent& e) { return merkle::LeafHash(AuditEntryBytes(e)); }

Bytes TreeHeadSigningInput(uint64_t tree_size, ByteView root_hash, int64_t signed_at_ms) {
  Bytes out(protocol::labels::kAuditTreeHeadSig.begin(),
            protocol::labels::kAuditTreeHeadSig.end());
  PutBe(out, tree_size, 8);
  out.insert(out.end(), root_hash.begin(), root_hash.end());
  PutBe(out, static_cast<uint64_t>(signed_at_ms), 8);
  return out;
}

Status VerifyTreeHead(const TreeHead& head, ByteView org_root_public) {
  if (head.root_hash.size() != merkle::kHashSize) {
    return Status::InvalidArgument("root hash is " + std::to_string(head.root_hash.size()) +
                                   " bytes, want " + std::to_string(merkle::kHashSize));
  }
  if (org_root_public.size() != kPublicKeySize) {
    return Status::InvalidArgument("org root public key is " +
                                   std::to_string(org_root_public.size()) + " bytes, want " +
                                   std::to_string(kPublicKeySize));
  }
  const std::string fingerprint = protocol::Fingerprint(org_root_public);
  if (head.key_fingerprint != fingerprint) {
    return Status::CryptoFailure("signed by key " + head.key_fingerprint +
                                 ", not by the org root key " + fingerprint);
  }
  Status s = protocol::EcdsaP256Verify(
      org_root_public, TreeHeadSigningInput(head.tree_size, head.root_hash, head.signed_at_ms),
      head.signature);
  if (!s.ok()) {
    return Status(s.code(), "signature does not verify with the org root key " + fingerprint +
                                ": " + s.message());
  }
  return Status::Ok();
}

Status VerifyBundle(const InclusionBundle& bundle) {
  const TreeHead& head = bundle.head;
  HF_RETURN_IF_ERROR(VerifyTreeHead(head, bundle.org_root_public)
                         .WithContext("tree head of " + SizeText(head.tree_size)));
  const Bytes leaf = AuditLeafHash(bundle.entry);
  if (!ConstantTimeEqual(leaf, bundle.entry.leaf_hash)) {
    return Status::CryptoFailure("entry " + std::to_string(bundle.entry.index) +
                                 ": its fields do not hash to its leaf hash");
  }
  return merkle::VerifyInclusion(leaf, bundle.entry.index, head.tree_size, bundle.proof,
                                 head.root_hash)
      .WithContext("entry " + std::to_string(bundle.entry.index) + " in the tree of " +
                   SizeText(head.tree_size));
}

Status VerifyBundle(const ConsistencyBundle& bundle) {
  const TreeHead& old_head = bundle.old_head;
  const TreeHead& new_head = bundle.new_head;
  if (old_head.tree_size == 0 || old_head.tree_size > new_head.tree_size) {
    return Status::InvalidArgument("no consistency proof from " + SizeText(old_head.tree_size) +
                                   " to " + SizeText(new_head.tree_size));
  }
  HF_RETURN_IF_ERROR(VerifyTreeHead(old_head, bundle.org_root_public)
                         .WithContext("old tree head of " + SizeText(old_head.tree_size)));
  HF_RETURN_IF_ERROR(VerifyTreeHead(new_head, bundle.org_root_public)
                         .WithContext("new tree head of " + SizeText(new_head.tree_size)));
  return merkle::VerifyConsistency(old_head.tree_size, new_head.tree_size, old_head.root_hash,
                                   new_head.root_hash, bundle.proof)
      .WithContext("from " + SizeText(old_head.tree_size) + " to " +
                   SizeText(new_head.tree_size));
}

std::string BundleJson(const InclusionBundle& bundle) {
  return JsonObject()
             .String("format", kAuditProofFormat)
             .String("type", "inclusion")
             .Raw("entry", EntryJson(bundle.entry))
             .String("leaf_hash", ToHex(bundle.entry.leaf_hash))
             .Raw("proof", HexArray(bundle.proof))
             .Raw("tree_head", HeadJson(bundle.head))
             .String("org_root_public_key", ToHex(bundle.org_root_public))
             .str() +
         "\n";
}

std::string BundleJson(const ConsistencyBundle& bundle) {
  return JsonObject()
             .String("format", kAuditProofFormat)
             .String("type", "consistency")
             .Raw("old_tree_head", HeadJson(bundle.old_head))
             .Raw("new_tree_head", HeadJson(bundle.new_head))
             .Raw("proof", HexArray(bundle.proof))
             .String("org_root_public_key", ToHex(bundle.org_root_public))
             .str() +
         "\n";
}

Result<ProofBundle> ParseProofBundle(std::string_view json) {
  try {
    Poco::JSON::Parser parser;
    const Poco::Dynamic::Var parsed = parser.parse(std::string(json));
    if (parsed.type() != typeid(Object::Ptr)) {
      return Status::InvalidArgument("proof bundle: not a JSON object");
    }
    return ParseBundleObject(*parsed.extract<Object::Ptr>());
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("proof bundle: " + e.displayText());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("proof bundle: ") + e.what());
  }
}

}  // namespace holdfast::archive
