// Security (see security.h): loading and reloading the TLS contexts, the
// password file and the ACL file, and authentication at CONNECT.
#include "src/security/security.h"

#include "src/util/log.h"

#include <ctime>

namespace petrel {

namespace {
// How often certificate files are checked for changes; a change is picked
// up after it has been stable for one interval (see TlsContext::filesChanged).
constexpr uint64_t kTlsWatchIntervalMs = 1000;
// A CRL is checked at every load and once a day; within a week of its
// nextUpdate it is warned about.
constexpr uint64_t kCrlCheckEveryWatches = 86400;
constexpr int64_t kCrlWarnWithinS = 7 * 86400;

void checkCrl(const ListenerSecurity& ls) {
  const std::string w = ls.tls->crlWarning(time(nullptr), kCrlWarnWithinS);
  if (!w.empty()) LOG_WARN("listener %s: %s", ls.name.c_str(), w.c_str());
}

void reloadTls(ListenerSecurity& ls, const char* why) {
  std::string err;
  const std::string old_serial = ls.tls->certSerial();
  if (ls.tls->reload(err)) {
    LOG_NOTICE("listener %s: TLS files reloaded (%s), certificate serial %s -> %s", ls.name.c_str(), why,
               old_serial.c_str(), ls.tls->certSerial().c_str());
    checkCrl(ls);
  } else {
    LOG_ERROR("listener %s: TLS reload (%s) refused, the previous certificate stays in use: %s",
              ls.name.c_str(), why, err.c_str());
  }
}

}  // namespace

Security::~Security() { stop(); }

bool Security::start(std::string& err) {
  if (!cfg_.password_file.empty()) {
    auto pw = std::make_unique<PasswordFile>();
    if (!pw->load(cfg_.password_file, err)) {
      err = "auth.password_file: " + err;
      return false;
    }
    LOG_NOTICE("password file %s: %zu users", cfg_.password_file.c_str(), pw->size());
    passwords_ = std::move(pw);
  }
  if (!cfg_.acl_file.empty()) {
    auto acl = std::make_unique<Acl>();
    if (!acl->load(cfg_.acl_file, err)) {
      err = "auth.acl_file: " + err;
      return false;
    }
    LOG_NOTICE("ACL file %s: %zu rules", cfg_.acl_file.c_str(), acl->ruleCount());
    acl_ = std::move(acl);
  }
  bool any_tls = false;
  for (size_t i = 0; i < cfg_.listeners.size(); ++i) {
    const ListenerConfig& l = cfg_.listeners[i];
    auto ls = std::make_unique<ListenerSecurity>();
    ls->name = l.address + ":" + std::to_string(l.port);
    ls->allow_anonymous = l.allow_anonymous;
    if (l.websocket) ls->websocket = &*l.websocket;
    if (l.tls) {
      std::string e;
      ls->tls = tls::TlsContext::create(*l.tls, e);
      if (!ls->tls) {
        err = "listeners[" + std::to_string(i) + "].tls (" + ls->name + "): " + e;
        return false;
      }
      checkCrl(*ls);
      ls->use_identity_as_username = l.tls->use_identity_as_username;
      ls->handshake_timeout_ms = l.tls->handshake_timeout_ms;
      any_tls = true;
      LOG_NOTICE("listener %s: TLS (minimum %s), certificate serial %s%s", ls->name.c_str(),
                 l.tls->min_version.c_str(), ls->tls->certSerial().c_str(),
                 l.tls->require_certificate ? ", client certificates required" : "");
    }
    if (ls->allow_anonymous && !passwords_ && !ls->use_identity_as_username &&
        (acl_ || !isLoopbackAddress(l.address)))
      LOG_WARN("listener %s takes user names as given (no auth.password_file): any client may claim "
               "any user name%s", ls->name.c_str(), acl_ ? " and get that user's ACL rights" : "");
    if (!ls->allow_anonymous && !passwords_ && !ls->use_identity_as_username)
      LOG_WARN("listener %s refuses anonymous clients but no auth.password_file is set: "
               "no client can connect there", ls->name.c_str());
    listeners_.push_back(std::move(ls));
  }
  if (any_tls) {
    uv_timer_init(loop_, &tls_watch_timer_);
    tls_watch_timer_.data = this;
    uv_timer_start(&tls_watch_timer_, &Security::onTlsWatch, kTlsWatchIntervalMs, kTlsWatchIntervalMs);
    tls_watch_started_ = true;
  }
  return true;
}

void Security::stop() {
  if (!tls_watch_started_) return;
  tls_watch_started_ = false;
  uv_timer_stop(&tls_watch_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&tls_watch_timer_), nullptr);
}

void Security::onTlsWatch(uv_timer_t* t) {
  auto* self = static_cast<Security*>(t->data);
  const bool crl_day = ++self->watches_ % kCrlCheckEveryWatches == 0;
  for (auto& ls : self->listeners_) {
    if (!ls->tls) continue;
    if (ls->tls->filesChanged()) reloadTls(*ls, "files changed");
    else if (crl_day) checkCrl(*ls);
  }
}

void Security::reload(const char* why) {
  LOG_NOTICE("reloading certificates, password file and ACL file (%s)", why);
  for (auto& ls : listeners_)
    if (ls->tls) reloadTls(*ls, why);
  std::string err;
  if (!cfg_.password_file.empty()) {
    auto pw = std::make_unique<PasswordFile>();
    if (pw->load(cfg_.password_file, err)) {
      LOG_NOTICE("password file %s reloaded: %zu users", cfg_.password_file.c_str(), pw->size());
      passwords_ = std::move(pw);
    } else {
      LOG_ERROR("password file not reloaded, the previous one stays in use: %s", err.c_str());
    }
  }
  if (!cfg_.acl_file.empty()) {
    auto acl = std::make_unique<Acl>();
    if (acl->load(cfg_.acl_file, err)) {
      LOG_NOTICE("ACL file %s reloaded: %zu rules", cfg_.acl_file.c_str(), acl->ruleCount());
      acl_ = std::move(acl);
    } else {
      LOG_ERROR("ACL file not reloaded, the previous one stays in use: %s", err.c_str());
    }
  }
}

mqtt::Reason Security::authenticate(const ListenerSecurity* ls, const std::optional<std::string>& peer_cn,
                                    const mqtt::Connect& p, std::optional<std::string>& username,
                                    std::string& why, const PasswordFile::Result* checked) const {
  using mqtt::Reason;
  if (ls && ls->use_identity_as_username) {
    // The verified certificate is the credential; a user name or password
    // in CONNECT is ignored, as mosquitto does.
    if (!peer_cn) {
      why = "no client certificate CN to use as the user name";
      return Reason::NotAuthorized;
    }
    username = *peer_cn;
    return Reason::Success;
  }
  if (p.username) {
    if (passwords_) {
      const auto r = checked ? *checked : passwords_->check(*p.username, p.password.value_or(""));
      if (r != PasswordFile::Result::Ok) {
        why = "user '" + quoted(*p.username) + "': " +
              (r == PasswordFile::Result::UnknownUser ? "unknown user" : "wrong password");
        return Reason::BadUserNameOrPassword;
      }
    } else if (ls && !ls->allow_anonymous) {
      // Without a password file a user name proves nothing, so it does not
      // get past a listener that refuses anonymous clients.
      why = "user '" + quoted(*p.username) + "': no password file to check it against";
      return Reason::NotAuthorized;
    }
    username = *p.username;
    return Reason::Success;
  }
  if (ls && !ls->allow_anonymous) {
    why = "anonymous clients are not allowed on listener " + ls->name;
    return Reason::NotAuthorized;
  }
  return Reason::Success;
}

}  // namespace petrel
