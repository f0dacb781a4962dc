import { Controller, Get, Header } from '@nestjs/common';
import { HOME_PAGE } from './home.page';

@Controller()
export class HomeController {
  @Get()
  @Header('content-type', 'text/html; charset=utf-8')
  home(): string {
    return HOME_PAGE;
  }
}
