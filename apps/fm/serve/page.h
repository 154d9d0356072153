#pragma once
// The HTML page fm serve shows at `/` (page.cpp).
namespace fm::app::serve {

const char* page_html();

}  // namespace fm::app::serve
