// src/httpd/status_page.h — the live status page served at / (with its
// script and style sheet): plain HTML, CSS and JavaScript in the binary,
// no external resources. It polls /api/v1/stats every second and draws its
// charts itself on a canvas; data from the broker (topic, group and bridge
// names) is only ever set as text, never as markup.
#pragma once

#include <string_view>

namespace petrel {

extern const std::string_view kStatusHtml;
extern const std::string_view kStatusJs;
extern const std::string_view kStatusCss;

}  // namespace petrel
